"""`stack down` ends every server recorded in a state dir (issue 11.4). The servers' own SIGTERM handling is in
tests/integration/test_servers_stop.py."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from ltvfeed.infra import processes
from ltvfeed.infra.stack import down
from ltvfeed.settings import Settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _wait_gone(pgid: int, port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (processes.group_members(pgid) or not _port_free(port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes.group_members(pgid) == []
    assert _port_free(port)


_LISTENER = (
    "import os, socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "os.fork()\n"  # a worker sharing the listening socket, as gunicorn's are
    "time.sleep(300)\n"
)


def test_stack_down_ends_every_server_recorded_in_the_state_dir(tmp_path: Path) -> None:
    port = _closed_port()
    settings = Settings(
        state_dir=tmp_path,
        pg_dsn=f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres",  # configured: not ours to stop
        redis_url=f"redis://127.0.0.1:{_closed_port()}/0",
        mlflow_port=_closed_port(),
    )
    proc = processes.start_group([sys.executable, "-c", _LISTENER, str(port)], state_dir=tmp_path, name="feast-1")
    deadline = time.monotonic() + 20
    while (_port_free(port) or len(processes.group_members(proc.pid)) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _port_free(port)

    assert down(settings) == ["feast-1"]
    _wait_gone(proc.pid, port)
    assert down(settings) == []

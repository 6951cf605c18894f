"""Every server we start stops with its process group on SIGTERM, and `stack down` ends everything of a state dir
(issue 11.4): the port is free afterwards and no child is left."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from ltvfeed.infra import embedded, processes
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


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


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


@pytest.mark.integration
def test_embedded_redis_stops_on_sigterm(tmp_path: Path) -> None:
    server = embedded.start_redis(tmp_path / "state", preferred_port=0)
    try:
        assert os.getpgid(server.pid) == server.pid  # daemonized: its own group
        os.kill(server.pid, signal.SIGTERM)
        _wait_gone(server.pid, server.port)
    finally:
        embedded.stop_redis(tmp_path / "state")


@pytest.mark.integration
def test_embedded_postgres_stops_on_sigterm(embedded_state_dir: Path) -> None:
    state = embedded_state_dir
    server = embedded.start_postgres(state, preferred_port=_closed_port())
    try:
        assert server.running and os.getpgid(server.pid) == server.pid  # pg_ctl makes the postmaster a leader
        # PostgreSQL makes each child (checkpointer, walwriter, ...) its own group leader and stops them itself
        deadline = time.monotonic() + 30
        while len(_children(server.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        children = _children(server.pid)
        assert len(children) >= 2
        os.kill(server.pid, signal.SIGTERM)
        _wait_gone(server.pid, server.port)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        embedded.stop_postgres(state)

"""Every embedded server we start stops with its process group on SIGTERM (issue 11.4): the port is free
afterwards and no child is left. `stack down` is tested in tests/unit/test_servers_stop.py."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ltvfeed.infra import embedded
from tests.unit.test_servers_stop import _closed_port, _wait_gone


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

"""Process groups recorded under the state dir: a server and every child it forked stop together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from ltvfeed.infra import processes

# a "server" that forks a worker which ignores SIGTERM (as gunicorn's or Airflow's workers may), then waits
_FORKING = (
    "import os, signal, time\nif os.fork() == 0:\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(300)\n"
)


def _wait_members(pgid: int, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(processes.group_members(pgid)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(processes.group_members(pgid)) >= n


def test_stop_all_ends_every_recorded_group_including_stubborn_children(tmp_path):
    proc = processes.start_group([sys.executable, "-c", _FORKING], state_dir=tmp_path, name="toy")
    assert processes.read_pidfile(tmp_path / "run" / "toy.pid") == proc.pid
    _wait_members(proc.pid, 2)
    assert processes.stop_all(tmp_path, grace_s=1) == ["toy"]
    assert processes.group_members(proc.pid) == []
    assert not (tmp_path / "run" / "toy.pid").exists()
    assert processes.stop_all(tmp_path) == []


def test_stale_pidfile_is_ignored(tmp_path):
    done = subprocess.Popen(["true"], start_new_session=True)
    done.wait()
    processes.write_pidfile(tmp_path, "gone", done.pid)
    assert processes.stop_all(tmp_path) == []
    assert not (tmp_path / "run" / "gone.pid").exists()


def test_foreground_runner_stops_its_group_on_sigterm(tmp_path):
    """``run_group_in_foreground`` (what `ltvfeed features serve` uses) takes its server's children with it."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from ltvfeed.infra.processes import run_group_in_foreground
        sys.exit(run_group_in_foreground([sys.executable, "-c", {_FORKING!r}], state_dir=Path({str(tmp_path)!r}),
                                         name="fg", grace_s=1))
    """)
    runner = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    while processes.read_pidfile(tmp_path / "run" / "fg.pid") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    pgid = processes.read_pidfile(tmp_path / "run" / "fg.pid")
    assert pgid is not None
    _wait_members(pgid, 2)
    os.kill(runner.pid, signal.SIGTERM)
    assert runner.wait(timeout=20) == 0
    assert processes.group_members(pgid) == []
    assert not (tmp_path / "run" / "fg.pid").exists()


def test_files_in_another_format_are_left_to_their_owner(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "other.pid").write_text('{"pid": 1}')
    assert processes.stop_all(tmp_path) == []
    assert (tmp_path / "run" / "other.pid").exists()

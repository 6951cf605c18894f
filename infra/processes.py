"""Servers we start, each in its own process group, recorded under the state dir so they can be stopped as one.

Convention (shared by every server of a state dir): ``<state_dir>/run/<name>.pid`` holds the process-group id
on its first line (the group leader's pid; further lines are ignored). :func:`stop_all` — what
``ltvfeed stack down`` calls — ends every group recorded there: SIGTERM, then SIGKILL after a grace period.
A group is signalled only while its leader still runs (a stale file of a recycled pid is ignored and removed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

GRACE_S = 10.0  # SIGTERM -> SIGKILL


def run_dir(state_dir: Path) -> Path:
    return state_dir / "run"


def pidfile(state_dir: Path, name: str) -> Path:
    return run_dir(state_dir) / f"{name}.pid"


def write_pidfile(state_dir: Path, name: str, pgid: int) -> Path:
    """Record ``pgid`` atomically (a reader never sees half a file)."""
    path = pidfile(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{pgid}\n")
    os.replace(tmp, path)
    return path


def read_pidfile(path: Path) -> int | None:
    """The process-group id recorded in ``path``; None when absent or unreadable."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
        return int(first)
    except (FileNotFoundError, ValueError):
        return None


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def _reap(pid: int) -> None:
    """Collect the exit status of our own child (tests start servers directly), so no zombie lingers."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def group_alive(pgid: int) -> bool:
    _reap(pgid)
    if Path("/proc").is_dir():
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, grace_s: float = GRACE_S, first: signal.Signals = signal.SIGTERM) -> bool:
    """Signal the whole group, wait up to ``grace_s`` for every member, SIGKILL what is left. True when any ran."""
    if not group_alive(pgid):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, first)
    deadline = time.monotonic() + grace_s
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
    return True


def stop_recorded(state_dir: Path, name: str, grace_s: float = GRACE_S) -> bool:
    """Stop the group recorded as ``name``; remove its pidfile. True when it was running. A file not in this
    convention (not one integer) is left alone for its owner to handle."""
    path = pidfile(state_dir, name)
    pgid = read_pidfile(path)
    if pgid is None:
        return False
    stopped = stop_group(pgid, grace_s)
    path.unlink(missing_ok=True)
    return stopped


def stop_all(state_dir: Path, grace_s: float = GRACE_S) -> list[str]:
    """Stop every group recorded under ``<state_dir>/run``; returns the names that were running."""
    directory = run_dir(state_dir)
    if not directory.is_dir():
        return []
    return [p.stem for p in sorted(directory.glob("*.pid")) if stop_recorded(state_dir, p.stem, grace_s)]


def start_group(
    argv: Sequence[str],
    *,
    state_dir: Path,
    name: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
) -> subprocess.Popen:
    """Start ``argv`` as the leader of a new process group, recorded as ``name``; output to ``log`` if given."""
    out = log.open("ab") if log is not None else None
    try:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL if log is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()
    write_pidfile(state_dir, name, proc.pid)
    return proc


def run_group_in_foreground(
    argv: Sequence[str],
    *,
    state_dir: Path,
    name: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    grace_s: float = GRACE_S,
) -> int:
    """Run a server in its own group until it exits or we get SIGTERM/SIGINT/SIGHUP; then stop its whole group
    (a server's workers must not outlive it holding its port). Returns its exit code (0 when we stopped it)."""
    stop_requested: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop_requested.append(signum)

    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, on_signal) for s in handled}
    proc = None
    try:
        proc = start_group(argv, state_dir=state_dir, name=name, env=env, cwd=cwd)
        while proc.poll() is None and not stop_requested:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
    finally:
        for s in handled:  # a second signal while stopping must not interrupt it
            signal.signal(s, signal.SIG_IGN)
        if proc is not None:
            stop_group(proc.pid, grace_s)
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                proc.wait(timeout=grace_s)
            if read_pidfile(pidfile(state_dir, name)) == proc.pid:
                pidfile(state_dir, name).unlink(missing_ok=True)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stop_requested:
        return 0
    return proc.returncode if proc is not None else 1

"""``ltvfeed airflow standalone``: the Airflow UI, scheduler, DAG processor and triggerer of this state dir, started
and stopped as one.

Airflow's own ``airflow standalone`` ignores SIGTERM for a minute or more, leaves its components (and their
LocalExecutor workers) running when it is killed, sizes parallelism at 32 and binds the UI and two log servers to
every interface. Here each component runs in its own process group, bound to ``LTVFEED_AIRFLOW_HOST``
(127.0.0.1 by default), without log servers (the UI reads task logs from the local log folder), with parallelism
sized to the machine's CPUs. A component that exits is restarted (a few times, as Airflow's docker-compose
restarts its services), so that one crash does not take the UI down with it. SIGTERM or SIGINT (Ctrl-C) stops
every group: SIGTERM, then SIGKILL after a grace period. The supervisor's pid is kept in
``<state_dir>/run/airflow.pid``, so ``ltvfeed stack down`` stops it too (:func:`stop_standalone`). Output goes
to one log file per component under the Airflow home.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ltvfeed.errors import UserError
from ltvfeed.infra.stack import Stack
from ltvfeed.orchestration.airflow_cli import airflow_executable, ensure_metadata_db
from ltvfeed.orchestration.airflow_env import airflow_env
from ltvfeed.orchestration.warm_scheduler import scheduler_command
from ltvfeed.settings import Settings

GRACE_S = 10.0  # SIGTERM -> SIGKILL
MAX_RESTARTS = 3  # a component that exits is restarted up to this many times ...
RESTART_WINDOW_S = 600.0  # ... within this window; one more exit stops them all


class _Stop(Exception):
    """Raised in the main thread by the SIGTERM/SIGINT handler."""


def pidfile(settings: Settings) -> Path:
    return settings.state_dir / "run" / "airflow.pid"


def standalone_env(stack: Stack) -> dict[str, str]:
    """Our Airflow environment for the UI's components: loopback, parallelism = CPUs (both overridable by the
    AIRFLOW__* variables themselves)."""
    settings = stack.settings
    port = settings.airflow_port
    env = airflow_env(stack)
    defaults = {
        "AIRFLOW__API__HOST": settings.airflow_host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__PARALLELISM": str(os.cpu_count() or 2),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://{settings.airflow_host}:{port}",
    }
    return {**env, **{k: os.environ.get(k, v) for k, v in defaults.items()}}


def component_commands(env: Mapping[str, str]) -> dict[str, list[str]]:
    airflow = airflow_executable()
    host, port = env["AIRFLOW__API__HOST"], env["AIRFLOW__API__PORT"]
    return {
        "api-server": [airflow, "api-server", "--host", host, "--port", port],
        "scheduler": scheduler_command("--skip-serve-logs"),
        "dag-processor": [airflow, "dag-processor"],
        "triggerer": [airflow, "triggerer", "--skip-serve-logs"],
    }


def _die_with_parent() -> None:
    """Child side (Linux): SIGTERM this process when the supervisor dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_groups(procs: Sequence[subprocess.Popen], grace_s: float = GRACE_S) -> None:
    """SIGTERM every process group, wait up to ``grace_s`` for the leaders, then SIGKILL whatever is left."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:  # workers a component forked may outlive their leader: the whole group goes
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _start(argv: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """One component in its own process group (so that its workers stop with it), output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def supervise(
    commands: Mapping[str, Sequence[str]],
    env: Mapping[str, str],
    logs: Path,
    pid_path: Path,
    *,
    ready: Callable[[], bool] | None = None,
    on_ready: Callable[[], None] | None = None,
    grace_s: float = GRACE_S,
    max_restarts: int = MAX_RESTARTS,
    restart_window_s: float = RESTART_WINDOW_S,
) -> int:
    """Run ``commands`` (name -> argv), each in its own process group with output in ``logs/<name>.log``, until
    SIGTERM/SIGINT; then stop all of them. A component that exits is restarted, as Airflow's docker-compose and
    Helm deployments restart theirs, up to ``max_restarts`` times within ``restart_window_s``; one more exit
    stops everything. Returns 0 when stopped by a signal, else the exit code of the component that gave up."""
    logs.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    if (other := running_pid(pid_path)) is not None:
        raise UserError(f"already running (pid {other}, {pid_path}): stop it first (kill {other}, or stack down)")

    def on_signal(signum: int, _frame: object) -> None:
        raise _Stop(signum)

    def record() -> None:
        pid_path.write_text(json.dumps({"pid": os.getpid(), "groups": [p.pid for p in procs.values()]}))

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    procs: dict[str, subprocess.Popen] = {}
    exits: dict[str, list[float]] = {name: [] for name in commands}
    code = 0
    try:
        pid_path.write_text(json.dumps({"pid": os.getpid()}))
        for name, argv in commands.items():
            procs[name] = _start(argv, env, logs / f"{name}.log")
        record()
        announced = False
        while True:
            for name, proc in procs.items():
                if proc.poll() is None:
                    continue
                now = time.monotonic()
                exits[name] = [t for t in exits[name] if now - t < restart_window_s] + [now]
                log = logs / f"{name}.log"
                if len(exits[name]) > max_restarts:
                    print(
                        f"{name} exited (code {proc.returncode}) {len(exits[name])} times within "
                        f"{restart_window_s:.0f} s; stopping the others. See {log}",
                        flush=True,
                    )
                    return proc.returncode or 1
                print(
                    f"{name} exited (code {proc.returncode}); restarting it "
                    f"({len(exits[name])} of {max_restarts} within {restart_window_s:.0f} s). See {log}",
                    flush=True,
                )
                stop_groups([proc], grace_s)  # whatever it forked goes with it
                procs[name] = _start(commands[name], env, log)
                record()
            if not announced and (ready is None or ready()):
                announced = True
                if on_ready:
                    on_ready()
            time.sleep(0.5)
    except _Stop:
        code = 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal while stopping must not interrupt it
            signal.signal(sig, signal.SIG_IGN)
        stop_groups(list(procs.values()), grace_s)
        with contextlib.suppress(FileNotFoundError):
            pid_path.unlink()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def running_pid(pid_path: Path) -> int | None:
    """The supervisor pid recorded in ``pid_path`` if that process still runs (a stale file is ignored)."""
    try:
        pid = int(json.loads(pid_path.read_text())["pid"])
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, KeyError, TypeError, ProcessLookupError):
        return None
    except PermissionError:
        return pid
    return pid


def stop_supervisor(pid_path: Path, grace_s: float = GRACE_S + 5) -> bool:
    """SIGTERM the supervisor recorded in ``pid_path`` and wait for it (it stops its components); SIGKILL it and
    its components' groups if it has not ended after ``grace_s``. False when nothing was running."""
    pid = running_pid(pid_path)
    if pid is None:
        return False
    groups = json.loads(pid_path.read_text()).get("groups", [])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and running_pid(pid_path) is not None:
        time.sleep(0.2)
    if running_pid(pid_path) is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            pid_path.unlink()
    return True


def stop_standalone(settings: Settings) -> bool:
    """Stop this state dir's ``ltvfeed airflow standalone`` (if any); True when one was running."""
    return stop_supervisor(pidfile(settings))


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def run_standalone(stack: Stack) -> int:
    """The UI and everything that runs DAGs, in the foreground until SIGTERM/SIGINT."""
    ensure_metadata_db(stack)
    env = standalone_env(stack)
    host, port = env["AIRFLOW__API__HOST"], int(env["AIRFLOW__API__PORT"])
    if _listening("127.0.0.1" if host in ("0.0.0.0", "") else host, port):
        raise UserError(f"port {port} is in use: set LTVFEED_AIRFLOW_PORT to a free one")
    logs = stack.airflow_home / "logs" / "standalone"
    passwords = stack.airflow_home / "simple_auth_manager_passwords.json.generated"

    def on_ready() -> None:
        login = "admin"
        with contextlib.suppress(Exception):
            login = ", ".join(f"{u} / {p}" for u, p in json.loads(passwords.read_text()).items())
        print(f"Airflow UI: http://{host}:{port}  (login {login}; passwords in {passwords})", flush=True)
        print(f"parallelism {env['AIRFLOW__CORE__PARALLELISM']}; logs in {logs}; stop: Ctrl-C", flush=True)

    print(f"starting the Airflow api-server, scheduler, dag-processor and triggerer on {host}:{port} ...", flush=True)
    return supervise(
        component_commands(env),
        env,
        logs,
        pidfile(stack.settings),
        ready=lambda: _listening("127.0.0.1" if host in ("0.0.0.0", "") else host, port),
        on_ready=on_ready,
    )

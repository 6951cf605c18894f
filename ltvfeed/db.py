"""PostgreSQL connection helpers shared by every part (warehouse, MLflow backend, Feast, dbt, GX)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ltvfeed.errors import UserError


class DatabaseUnavailable(UserError):
    """The configured PostgreSQL server cannot be reached; the message says what to fix."""


def with_database(dsn: str, dbname: str) -> str:
    """The same server DSN pointed at another database."""
    return make_conninfo(dsn, dbname=dbname)


def dsn_parts(dsn: str) -> dict[str, str]:
    """host/port/user/password/dbname of a DSN (URL or key=value form), defaults filled in."""
    parts = conninfo_to_dict(dsn)
    return {
        "host": str(parts.get("host") or "127.0.0.1"),
        "port": str(parts.get("port") or "5432"),
        "user": str(parts.get("user") or "postgres"),
        "password": str(parts.get("password") or ""),
        "dbname": str(parts.get("dbname") or "postgres"),
    }


def sqlalchemy_url(dsn: str, driver: str = "psycopg2") -> str:
    """A SQLAlchemy URL for tools that want one (MLflow, GX)."""
    from sqlalchemy.engine import URL

    p = dsn_parts(dsn)
    return URL.create(
        f"postgresql+{driver}",
        username=p["user"],
        password=p["password"] or None,
        host=p["host"],
        port=int(p["port"]),
        database=p["dbname"],
    ).render_as_string(hide_password=False)


def check_server(dsn: str) -> None:
    """Fail with a one-line, actionable message when the server is unreachable."""
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        p = dsn_parts(dsn)
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {p['host']}:{p['port']} as {p['user']} ({first}); "
            "fix LTVFEED_PG_DSN or unset it to use the embedded server"
        ) from exc


def ensure_database(server_dsn: str, dbname: str) -> bool:
    """Create ``dbname`` on the server if missing; True when it was created."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
        return True


def drop_database(server_dsn: str, dbname: str) -> None:
    """Drop ``dbname``, disconnecting its sessions first (tests clean up with this)."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
            (dbname,),
        )
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(dbname)))


@contextmanager
def connect(dsn: str, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A psycopg connection that commits on success and rolls back on error."""
    with psycopg.connect(dsn, autocommit=autocommit) as conn:
        yield conn


@contextmanager
def advisory_lock(dsn: str, name: str) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock named ``name`` while the block runs: one holder at a time among
    every process using the server (two DAG runs, a run and the CLI); the server releases it if the holder dies."""
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (key,))

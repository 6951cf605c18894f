"""Where Feast's configuration comes from: the stack, through one set of variables.

``feature_repo/feature_store.yaml`` holds the layout (SQL registry and offline store in the warehouse, Redis
online store) with ``${LTVFEED_FEAST_*}`` placeholders. :func:`feast_env` computes those values from a
:class:`Stack`; :func:`repo_config` fills the same file with them for the Python API, and the ``feast`` CLI
(``feast serve``) reads it with them in its environment. So the two can never disagree.

The Feast project name comes from the stack's Redis prefix ("ltvfeed:" -> "ltvfeed"): Feast's Redis keys end
with the project name, so a test run's prefix isolates its online features as it isolates its other keys.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from psycopg.conninfo import conninfo_to_dict

from ltvfeed.db import dsn_parts
from ltvfeed.errors import UserError
from ltvfeed.settings import project_root

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig

    from ltvfeed.infra.stack import Stack

FEAST_SCHEMA = "feast"  # warehouse schema holding the registry tables and training-set entity uploads
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def feature_repo_dir() -> Path:
    """The Feast repository (definitions and feature_store.yaml), next to dags/ and dbt/."""
    return project_root() / "feature_repo"


def feast_project(redis_prefix: str) -> str:
    """A valid Feast project name from the stack's Redis key prefix."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", redis_prefix).strip("_")
    if not name:
        raise UserError(f"the Redis prefix {redis_prefix!r} gives no usable Feast project name; use letters/digits")
    return name


def redis_connection_string(url: str) -> str:
    """redis://[user:password@]host:port/db -> Feast's 'host:port,db=N,password=...' form."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise UserError(f"Feast needs a redis:// or rediss:// URL with a host, got {url!r}")
    pieces = [f"{parts.hostname}:{parts.port or 6379}"]
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise UserError(f"the Redis URL {url!r} names database {db!r}; expected a number")
    pieces.append(f"db={db}")
    if parts.username:
        pieces.append(f"username={unquote(parts.username)}")
    if parts.password:
        password = unquote(parts.password)
        if "," in password:
            raise UserError("Feast's Redis connection string cannot carry a password containing ','")
        pieces.append(f"password={password}")
    if parts.scheme == "rediss":
        pieces.append("ssl=true")
    return ",".join(pieces)


def _registry_url(dsn: str, sslmode: str) -> str:
    """SQLAlchemy URL (psycopg 3) of the warehouse with the registry tables in schema ``feast``."""
    from sqlalchemy.engine import URL

    p = dsn_parts(dsn)
    return URL.create(
        "postgresql+psycopg",
        username=p["user"],
        password=p["password"] or None,
        host=p["host"],
        port=int(p["port"]),
        database=p["dbname"],
        query={"sslmode": sslmode, "options": f"-csearch_path={FEAST_SCHEMA}"},
    ).render_as_string(hide_password=False)


def feast_env(stack: Stack) -> dict[str, str]:
    """The stack's environment plus the LTVFEED_FEAST_* values feature_store.yaml reads."""
    wh = dsn_parts(stack.warehouse_dsn)
    # Local servers have no TLS (Feast would default to 'require'); a DSN asking for TLS keeps it.
    sslmode = str(conninfo_to_dict(stack.warehouse_dsn).get("sslmode") or "disable")
    return {
        **stack.env(),
        "LTVFEED_FEAST_PROJECT": feast_project(stack.settings.redis_prefix),
        "LTVFEED_FEAST_REGISTRY_URL": _registry_url(stack.warehouse_dsn, sslmode),
        "LTVFEED_FEAST_PG_HOST": wh["host"],
        "LTVFEED_FEAST_PG_PORT": wh["port"],
        "LTVFEED_FEAST_PG_DATABASE": wh["dbname"],
        "LTVFEED_FEAST_PG_USER": wh["user"],
        "LTVFEED_FEAST_PG_PASSWORD": wh["password"],
        "LTVFEED_FEAST_PG_SSLMODE": sslmode,
        "LTVFEED_FEAST_REDIS": redis_connection_string(stack.redis_url),
    }


def render_feature_store_yaml(values: dict[str, str], path: Path | None = None) -> str:
    """feature_store.yaml with its ${VAR} placeholders filled from ``values`` (missing ones are an error)."""
    path = path or feature_repo_dir() / "feature_store.yaml"
    text = path.read_text()
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise UserError(f"{path} needs {', '.join(missing)}; these come from ltvfeed.features.feast_env(stack)")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def repo_config(stack: Stack) -> RepoConfig:
    """Feast's RepoConfig for this stack: feature_store.yaml filled with :func:`feast_env`."""
    import yaml
    from feast import RepoConfig

    raw = yaml.safe_load(render_feature_store_yaml(feast_env(stack)))
    config = RepoConfig(**raw)
    config.repo_path = feature_repo_dir()
    return config


def ensure_feast_schema(stack: Stack) -> None:
    """The schema the registry and entity uploads live in (the SQL registry creates its tables, not schemas)."""
    import psycopg

    with psycopg.connect(stack.warehouse_dsn, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_namespace where nspname = %s", (FEAST_SCHEMA,)).fetchone()
        if not exists:
            # a concurrent worker may create it between our check and create
            with contextlib.suppress(psycopg.errors.UniqueViolation):
                conn.execute(f"create schema if not exists {FEAST_SCHEMA}")


def import_feast_for_reads() -> None:
    """Import Feast about five times faster, for a short-lived process that only reads (``features get``).

    Most of ``import feast`` is spent in typeguard's ``@typechecked`` on about 250 Feast classes, which
    re-parses and recompiles their source at import time (a no-op under ``python -O``), and in importing torch,
    which Feast loads only to offer tensor outputs. Both are switched off while Feast is imported and restored
    afterwards: later imports of torch and typeguard behave normally. A no-op when Feast is already imported."""
    import sys

    if "feast" in sys.modules:
        return
    import typeguard

    def unchecked(target=None, **_):  # typeguard's own behaviour under python -O
        return target if target is not None else (lambda t: t)

    checked, had_torch = typeguard.typechecked, "torch" in sys.modules
    typeguard.typechecked = unchecked
    if not had_torch:
        sys.modules["torch"] = None  # type: ignore[assignment]  # import torch -> ImportError; Feast copes
    try:
        import feast  # noqa: F401
    finally:
        typeguard.typechecked = checked
        if not had_torch:
            del sys.modules["torch"]


def feature_store(stack: Stack, *, create_schema: bool = True) -> FeatureStore:
    """A FeatureStore on this stack. Cheap to build; keep one per process for repeated online reads.
    ``create_schema=False`` for reads of an applied registry (one round trip less)."""
    from feast import FeatureStore

    if create_schema:
        ensure_feast_schema(stack)
    return FeatureStore(repo_path=str(feature_repo_dir()), config=repo_config(stack))


@contextlib.contextmanager
def registry_lock(stack: Stack, project: str) -> Iterator[None]:
    """One writer at a time of a Feast project's SQL registry, across processes (two DAG runs of a backfill, a run
    and the CLI). Feast's registry writes read a row, then write it back without locking it: two applies of a
    new project both insert version 0 and one fails; two materialisations can each write back the view's
    intervals as they read them, losing the other's, and two incremental ones both start at the same last end."""
    from ltvfeed.db import advisory_lock

    with advisory_lock(stack.warehouse_dsn, f"feast registry {project}"):
        yield

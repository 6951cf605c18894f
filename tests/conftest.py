"""Shared fixtures. Integration tests talk to real PostgreSQL/Redis: the servers named by LTVFEED_PG_DSN /
LTVFEED_REDIS_URL, or the embedded ones under the project's state dir when those are unset. Each test run
uses its own databases and Redis key prefix and removes them afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from pathlib import Path

import pytest

from ltvfeed.settings import Settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--integration", action="store_true", help="also run tests marked integration")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--integration"):
        return
    skip = pytest.mark.skip(reason="integration test: run with --integration")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def stack(run_id: str):
    """The real stack with this run's own databases and Redis prefix."""
    from ltvfeed.db import drop_database
    from ltvfeed.infra.stack import up

    settings = Settings(
        warehouse_db=f"ltvfeed_test_{run_id}",
        mlflow_db=f"ltvfeed_test_{run_id}_mlflow",
        redis_prefix=f"ltvfeed_test_{run_id}:",
    )
    s = up(settings)
    yield s
    import redis

    client = redis.Redis.from_url(s.redis_url)
    keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    for db in (settings.warehouse_db, settings.mlflow_db):
        drop_database(s.pg_dsn, db)
    from ltvfeed.serving.feed_service import classic_copy_path

    kept = classic_copy_path(settings.state_dir, settings.redis_prefix)  # classic feeds the test APIs kept
    for path in kept.parent.glob(f"{kept.stem.removesuffix('_')}*.json"):
        path.unlink(missing_ok=True)


@pytest.fixture
def warehouse_dsn(stack, run_id: str) -> Iterator[str]:
    """A fresh, empty warehouse database (schemas created) for one test."""
    from ltvfeed.db import drop_database
    from ltvfeed.warehouse import ensure_warehouse

    name = f"ltvfeed_test_{run_id}_{uuid.uuid4().hex[:6]}"
    dsn = ensure_warehouse(stack.pg_dsn, name)
    yield dsn
    drop_database(stack.pg_dsn, name)


@pytest.fixture(scope="session")
def simulated_shop(stack, run_id: str) -> Callable[..., AbstractContextManager]:
    """Factory of small simulated shops, each in its own warehouse (every mart built for ``end``), MLflow
    database, state dir and Redis project; all removed on exit. Use inside a module-scoped fixture."""

    @contextmanager
    def make(state_dir: Path, tag: str, *, n_users: int, end: date, horizon: int) -> Iterator:
        import json

        from ltvfeed.db import drop_database
        from ltvfeed.dbt_runner import run_dbt
        from ltvfeed.features import clear_online
        from ltvfeed.infra.stack import up
        from ltvfeed.simulator import SimulationConfig, simulate_to_directory
        from ltvfeed.simulator.load import load_into_warehouse

        suffix = uuid.uuid4().hex[:6]
        settings = Settings(
            pg_dsn=stack.pg_dsn,
            redis_url=stack.redis_url,
            state_dir=state_dir,
            warehouse_db=f"ltvfeed_test_{run_id}_{tag}_{suffix}",
            mlflow_db=f"ltvfeed_test_{run_id}_{tag}ml_{suffix}",
            redis_prefix=f"ltvfeed_test_{run_id}_{tag}_{suffix}:",
        )
        s = up(settings)
        try:
            landing = state_dir / "shop"
            config = SimulationConfig(n_users=n_users, n_items=60, days=240, seed=5, end_date=end, horizons=(horizon,))
            simulate_to_directory(config, landing, progress=False)
            load_into_warehouse(s.warehouse_dsn, landing)
            # every mart for the scoring snapshot (Feast apply checks every view's source)
            dbt_vars = json.dumps({"as_of": end.isoformat(), "horizon_days": horizon})
            run_dbt(s.env(), ["run", "--vars", dbt_vars], target_path=state_dir / "dbt_target")
            yield s
        finally:
            try:
                clear_online(s)
            finally:
                drop_database(stack.pg_dsn, settings.warehouse_db)
                drop_database(stack.pg_dsn, settings.mlflow_db)

    return make


@pytest.fixture(scope="session")
def fake_redis_url() -> Iterator[str]:
    """An in-process Redis (fakeredis speaking RESP over TCP on a free loopback port) for the unit suite: the
    same clients, URLs and key layout as with the real server, no server needed. One per test process."""
    import threading

    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    server.shutdown()
    server.server_close()

"""Shared fixtures. Integration tests talk to real PostgreSQL/Redis: the servers named by LTVFEED_PG_DSN /
LTVFEED_REDIS_URL, or the embedded ones under the project's state dir when those are unset. Each test process
(one per pytest-xdist worker) uses its own databases and Redis key prefix and removes them afterwards.

tests/unit/ holds the tests that need no server; tests/integration/ those marked ``integration`` (a module with
both kinds is split in two of the same name, the integration half importing what it shares from the unit half).
`pytest --integration` runs test files in parallel (`-n auto --dist loadfile` in pyproject.toml): a module's
tests stay on one worker, so module-scoped fixtures are built once. The worker count is chosen below; plain
`pytest` (unit tests only) runs in one process."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ltvfeed.settings import Settings

RUN_ENV = "LTVFEED_TEST_RUN"  # one id for a whole `pytest` run, shared by its xdist workers
WORKERS_ENV = "PYTEST_XDIST_AUTO_NUM_WORKERS"  # xdist's own override of `-n auto`


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--integration", action="store_true", help="also run tests marked integration")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one process for unit runs (they take seconds, worker start-up would dominate); for
    integration runs two workers per core, since those tests mostly wait on PostgreSQL, dbt and Redis."""
    if os.environ.get(WORKERS_ENV):
        return int(os.environ[WORKERS_ENV])
    if not config.getoption("--integration"):
        return 0
    return 2 * (os.cpu_count() or 1)


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or the only process): workers inherit the id
        os.environ[RUN_ENV] = uuid.uuid4().hex[:8]
    # Hypothesis keeps its example database in ./.hypothesis by default: tests write nothing into the checkout
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "ltvfeed-hypothesis")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller drops the shop templates its workers shared (see ``simulated_shop``)."""
    if hasattr(config, "workerinput"):
        return
    shared = _shared_dir()
    registry = shared / "templates"
    if registry.exists():
        from ltvfeed.db import drop_database

        for line in registry.read_text().splitlines():
            server_dsn, name = line.split("\t")
            drop_database(server_dsn, name)
    shutil.rmtree(shared, ignore_errors=True)


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")  # Debian's packages
CHROMIUM_FLAGS = (  # offline: nothing but the page's own origin may be fetched
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


# The longest integration modules (minutes each: Airflow DAG runs, LTV training), longest first. xdist hands out
# test files in collection order (with `--no-loadscope-reorder`; its default orders by test count, which put
# the one-test, five-minute DAG module last, alone on a worker at the end of the run), so these go first and
# the many short modules fill the workers around them. Measured with `pytest --integration --durations=40`.
LONGEST_MODULES = (
    "test_backfill",  # marked slow: .ci/run gives it a step of its own
    "test_pipeline_dag",
    "test_any_date",
    "test_ltv_run",
    "test_ltv_predict",
    "test_propensity",
    "test_generation",
    "test_dbt",
    "test_closed_loop",
    "test_quality",
    "test_ltv_backtest",
)


def _longest_first(item: pytest.Item) -> tuple[int, bool]:
    name = item.path.stem
    rank = LONGEST_MODULES.index(name) if name in LONGEST_MODULES else len(LONGEST_MODULES)
    return rank, "integration" not in item.path.parts  # a split module's integration half first


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_longest_first)  # stable: tests keep their order within a module
    no_browser = pytest.mark.skip(reason=f"browser test: needs Debian's chromium ({CHROMIUM}) and {CHROMEDRIVER}")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(no_browser)
    if config.getoption("--integration"):
        return
    skip = pytest.mark.skip(reason="integration test: run with --integration")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def headless_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Any]]:
    """Starts headless Chromium (a fresh profile each) on demand; every browser started is quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    started = []

    def start():
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
            options.add_argument(flag)
        started.append(webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options))
        return started[-1]

    try:
        yield start
    finally:
        for browser in started:
            browser.quit()


def _shared_dir() -> Path:
    """A folder shared by the processes of this run (locks, the templates registry)."""
    path = Path(tempfile.gettempdir()) / f"ltvfeed_test_{os.environ[RUN_ENV]}"
    path.mkdir(exist_ok=True)
    return path


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between the processes of a run (xdist workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
def embedded_state_dir() -> Iterator[Path]:
    """A state dir for an embedded PostgreSQL, outside pytest's base temp dir: as root, pgserver runs the server
    as user 'pgserver' and opens the path's parents to it, while every xdist worker closes
    /tmp/pytest-of-root (mode 0700) again when it first makes a tmp_path, which can lock the server out of
    its own data directory mid-test."""
    path = Path(tempfile.mkdtemp(prefix="ltvfeed-test-embedded-"))
    try:
        yield path / "state"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def stack(run_id: str):
    """The real stack with this process's own databases and Redis prefix."""
    from ltvfeed.infra.stack import discard, up

    settings = Settings(
        warehouse_db=f"ltvfeed_test_{run_id}",
        mlflow_db=f"ltvfeed_test_{run_id}_mlflow",
        redis_prefix=f"ltvfeed_test_{run_id}:",
    )
    with _locked(settings.state_dir / "test_stack.lock"):  # workers must not start embedded servers twice
        s = up(settings)
    yield s
    discard(s)
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


@pytest.fixture
def empty_shop(stack, run_id: str, tmp_path: Path):
    """The session servers with a fresh, empty warehouse and MLflow database of this test's own (dropped at the
    end), its state under tmp_path: a shop that has imported nothing yet."""
    from ltvfeed.db import drop_database
    from ltvfeed.infra.stack import up

    tag = f"ltvfeed_test_{run_id}_e{uuid.uuid4().hex[:6]}"
    settings = Settings(
        pg_dsn=stack.pg_dsn,
        redis_url=stack.redis_url,
        state_dir=tmp_path / "state",
        warehouse_db=tag,
        mlflow_db=f"{tag}_mlflow",
        redis_prefix=f"{stack.settings.redis_prefix}{tag}:",
    )
    yield up(settings)
    for db in (settings.warehouse_db, settings.mlflow_db):
        drop_database(stack.pg_dsn, db)


def _shop_template(stack, n_users: int, end: date, horizon: int) -> tuple[str, Path]:
    """The simulated shop for these parameters, built once per test run (whichever worker needs it first):
    a template database (raw data loaded, every mart built for ``end``) and a folder with its landing files
    and dbt target. Modules get writable copies; the controller drops the templates at the end."""
    import json

    from ltvfeed.db import drop_database
    from ltvfeed.dbt_runner import run_dbt
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory
    from ltvfeed.simulator.load import load_into_warehouse
    from ltvfeed.warehouse import ensure_warehouse

    key = hashlib.sha1(f"{n_users}|{end}|{horizon}".encode()).hexdigest()[:8]
    shared = _shared_dir()
    name = f"ltvfeed_test_{os.environ[RUN_ENV]}_tmpl_{key}"
    files = shared / f"shop_{key}"
    with _locked(shared / f"shop_{key}.lock"):
        if not (files / "done").exists():
            shutil.rmtree(files, ignore_errors=True)
            drop_database(stack.pg_dsn, name)
            with _locked(shared / "templates.lock"), open(shared / "templates", "a") as registry:
                registry.write(f"{stack.pg_dsn}\t{name}\n")
            dsn = ensure_warehouse(stack.pg_dsn, name)
            config = SimulationConfig(n_users=n_users, n_items=60, days=240, seed=5, end_date=end, horizons=(horizon,))
            simulate_to_directory(config, files / "shop", progress=False)
            load_into_warehouse(dsn, files / "shop")
            # every mart for the scoring snapshot (Feast apply checks every view's source)
            dbt_vars = json.dumps({"as_of": end.isoformat(), "horizon_days": horizon})
            shop_stack = dataclasses.replace(stack, settings=stack.settings.model_copy(update={"warehouse_db": name}))
            run_dbt(shop_stack.env(), ["run", "--vars", dbt_vars], target_path=files / "dbt_target")
            (files / "done").touch()
    return name, files


def _copy_database(server_dsn: str, template: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(template)))


@pytest.fixture(scope="session")
def simulated_shop(stack, run_id: str) -> Callable[..., AbstractContextManager]:
    """Factory of small simulated shops, each in its own warehouse (every mart built for ``end``), MLflow
    database, state dir and Redis project; all removed on exit. Use inside a module-scoped fixture. The shop for
    one set of parameters is simulated and built once per test run; each call gets its own copy of it."""

    @contextmanager
    def make(state_dir: Path, tag: str, *, n_users: int, end: date, horizon: int) -> Iterator:
        from ltvfeed.db import drop_database
        from ltvfeed.features import clear_online
        from ltvfeed.infra.stack import up

        suffix = uuid.uuid4().hex[:6]
        settings = Settings(
            pg_dsn=stack.pg_dsn,
            redis_url=stack.redis_url,
            state_dir=state_dir,
            warehouse_db=f"ltvfeed_test_{run_id}_{tag}_{suffix}",
            mlflow_db=f"ltvfeed_test_{run_id}_{tag}ml_{suffix}",
            redis_prefix=f"ltvfeed_test_{run_id}_{tag}_{suffix}:",
        )
        template, files = _shop_template(stack, n_users, end, horizon)
        s = None
        try:
            _copy_database(stack.pg_dsn, template, settings.warehouse_db)
            s = up(settings)
            shutil.copytree(files / "shop", state_dir / "shop")  # the landing files, as if simulated here
            yield s
        finally:
            try:
                if s is not None:
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

"""`ltvfeed pipeline run` on a shop whose history ends in 2017, through the CLI as a user runs it: every task of
ltv_pipeline runs (no DAG start date in the way); ltv_retrain's defaults fit the shop's 90 days (no conf); an
explicit horizon the history cannot hold is refused naming the param and what fits; a run in which no task ran
is an error, and the empty run is deleted."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest

from ltvfeed.settings import Settings

END = date(2017, 3, 1)  # the shop's data ends on 2017-02-28


@pytest.fixture(scope="module")
def shop(stack, run_id, tmp_path_factory):
    """A 90-day shop ending 2017-02-28 in its own warehouse, MLflow database, state dir and Redis project; the
    landing files are imported (so each test can run alone), the dbt manifest parsed for Cosmos."""
    from ltvfeed.db import drop_database
    from ltvfeed.dbt_runner import parse
    from ltvfeed.features import clear_online
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.tasks import ingest_landing
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory

    suffix = uuid.uuid4().hex[:6]
    settings = Settings(
        pg_dsn=stack.pg_dsn,
        redis_url=stack.redis_url,
        state_dir=tmp_path_factory.mktemp("any_date_state"),
        warehouse_db=f"ltvfeed_test_{run_id}_old_{suffix}",
        mlflow_db=f"ltvfeed_test_{run_id}_oldml_{suffix}",
        redis_prefix=f"ltvfeed_test_{run_id}_old_{suffix}:",
    )
    s = up(settings)
    try:
        config = SimulationConfig(n_users=300, n_items=60, days=90, seed=11, end_date=END)
        simulate_to_directory(config, settings.landing_dir, progress=False)
        ingest_landing(settings)
        parse(s.env())
        yield s
    finally:
        try:
            clear_online(s)
        finally:
            drop_database(stack.pg_dsn, settings.warehouse_db)
            drop_database(stack.pg_dsn, settings.mlflow_db)


def _cli(shop, *args: str) -> subprocess.CompletedProcess:
    s = shop.settings
    env = {
        **os.environ,
        "LTVFEED_PG_DSN": s.pg_dsn,
        "LTVFEED_REDIS_URL": s.redis_url,
        "LTVFEED_STATE_DIR": str(s.state_dir),
        "LTVFEED_WAREHOUSE_DB": s.warehouse_db,
        "LTVFEED_MLFLOW_DB": s.mlflow_db,
        "LTVFEED_REDIS_PREFIX": s.redis_prefix,
    }
    ltvfeed = Path(sys.executable).parent / "ltvfeed"
    return subprocess.run([str(ltvfeed), *args], env=env, cwd=s.state_dir, capture_output=True, text=True, timeout=1500)


def _tasks(shop, dag_id: str) -> dict[str, str | None]:
    """task label -> state of the DAG's newest run."""
    from ltvfeed.orchestration.airflow_env import airflow_env
    from ltvfeed.orchestration.backfill_metadata import Metadata

    meta = Metadata(airflow_env(shop)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    runs = meta.runs_created_since(dag_id, datetime(1970, 1, 1, tzinfo=UTC))
    assert runs, f"no {dag_id} run recorded"
    return {t.label: t.state for t in meta.task_runs(dag_id, runs[-1][1])}


@pytest.fixture(scope="module")
def pipeline_run(shop) -> subprocess.CompletedProcess:
    """`ltvfeed pipeline run --as-of END` once for the module: the retrain reads the marts it builds, whichever
    test runs first."""
    return _cli(shop, "pipeline", "run", "--as-of", END.isoformat())


@pytest.mark.integration
def test_pipeline_run_in_2017_runs_every_task(shop, pipeline_run):
    done = pipeline_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tasks = _tasks(shop, "ltv_pipeline")
    assert {"resolve_as_of", "ingest", "expectations_raw", "expectations_marts", "materialize_features"} <= set(tasks)
    assert sum(t.startswith("dbt.") for t in tasks) >= 6
    assert {state for state in tasks.values()} == {"success"}, tasks
    # quiet by default: a line per task, Airflow's output in a file whose path is printed
    assert "expectations_marts" in done.stdout and "full log: " in done.stdout
    assert len(done.stdout.splitlines()) < len(tasks) + 10
    log = Path(done.stdout.rsplit("full log: ", 1)[1].strip())
    assert log.is_file() and log.is_relative_to(shop.settings.state_dir) and log.stat().st_size > 10_000
    with psycopg.connect(shop.warehouse_dsn) as conn:
        customers = conn.execute("select count(*) from marts.user_features where as_of = %s", (END,)).fetchone()[0]
    assert customers > 0


@pytest.mark.integration
def test_retrain_defaults_fit_a_short_history(shop, pipeline_run):
    assert pipeline_run.returncode == 0, pipeline_run.stderr[-3000:]
    done = _cli(shop, "pipeline", "run", "--dag-id", "ltv_retrain", "--as-of", END.isoformat())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert set(_tasks(shop, "ltv_retrain").values()) == {"success"}
    from ltvfeed.infra.tracking import configure_mlflow

    client = configure_mlflow(shop)
    run = client.search_runs([client.get_experiment_by_name("ltv").experiment_id])[0]
    horizon = int(run.data.params["horizon_days"])
    assert 7 <= horizon < 365  # fitted to the 90 days of history, not the 365-day default
    assert run.data.params["holdout_cutoff"] == date.fromordinal(END.toordinal() - horizon).isoformat()


@pytest.mark.integration
def test_retrain_with_a_horizon_the_history_cannot_hold_is_refused(shop, pipeline_run):
    done = _cli(
        shop, "pipeline", "run", "--dag-id", "ltv_retrain", "--as-of", END.isoformat(), "--conf", '{"horizon_days":365}'
    )
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: DAG ltv_retrain run for 2017-03-01 failed in task prepare_training_data")
    assert "horizon_days=365" in error and "fits it" in error and "Traceback" not in done.stderr


@pytest.mark.integration
def test_a_run_that_ran_no_task_is_an_error_and_is_deleted(shop):
    # before the DAGs' start date (1970-01-01): Airflow schedules no task and would call the run a success
    done = _cli(shop, "pipeline", "run", "--as-of", "1969-12-31", "--dag-id", "propensity_retrain")
    assert done.returncode == 2
    assert "ran no task" in done.stderr and "deleted" in done.stderr
    from ltvfeed.orchestration.airflow_env import airflow_env
    from ltvfeed.orchestration.backfill_metadata import Metadata

    meta = Metadata(airflow_env(shop)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])  # the empty run is gone
    assert not meta._rows("select 1 from dag_run where dag_id = 'propensity_retrain' and logical_date < '1970-01-01'")

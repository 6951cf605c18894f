"""The warehouse lease (:mod:`ltvfeed.warehouse.lease`) against the real PostgreSQL: one builder of the
cutoff-dependent models at a time, renewable by its holder, taken over once expired, waited for by a build."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest

from ltvfeed.db import drop_database
from ltvfeed.warehouse import ensure_warehouse
from ltvfeed.warehouse.lease import held, release, try_acquire

pytestmark = pytest.mark.integration


@pytest.fixture
def dsn(stack, run_id):
    name = f"ltvfeed_test_{run_id}_lease_{uuid.uuid4().hex[:6]}"
    try:
        yield ensure_warehouse(stack.pg_dsn, name)
    finally:
        drop_database(stack.pg_dsn, name)


def test_one_holder_at_a_time_renewable_and_released(dsn):
    assert try_acquire(dsn, "run A") is None
    assert try_acquire(dsn, "run B") == "run A"  # B waits
    assert try_acquire(dsn, "run A") is None  # A renews
    assert release(dsn, "run B") is False  # B never had it: A keeps it
    assert try_acquire(dsn, "run B") == "run A"
    assert release(dsn, "run A") is True
    assert try_acquire(dsn, "run B") is None


def test_an_expired_lease_is_taken_over(dsn):
    assert try_acquire(dsn, "killed run") is None
    time.sleep(0.05)
    assert try_acquire(dsn, "run B", ttl=timedelta(milliseconds=1)) is None
    assert release(dsn, "killed run") is False and release(dsn, "run B") is True


def test_a_build_waits_for_the_holder_then_builds(dsn):
    assert try_acquire(dsn, "pipeline run") is None
    order: list[str] = []

    def build() -> None:
        with held(dsn, "snapshot build", poll_s=0.05):
            order.append("build")

    waiting = threading.Thread(target=build)
    waiting.start()
    time.sleep(0.5)
    order.append("pipeline done")
    release(dsn, "pipeline run")
    waiting.join(30)
    assert order == ["pipeline done", "build"]
    assert try_acquire(dsn, "next") is None  # the build gave it back


def test_a_build_that_waits_too_long_says_who_holds_the_warehouse(dsn):
    from ltvfeed.errors import UserError

    assert try_acquire(dsn, "ltv_pipeline backfill__2026-12-03") is None
    with (
        pytest.raises(UserError, match="ltv_pipeline backfill__2026-12-03"),
        held(dsn, "cli", wait=timedelta(seconds=0.2), poll_s=0.05),
    ):
        pass


def test_a_run_takes_over_the_lease_of_a_run_that_finished_without_giving_it_back(stack, dsn):
    """A run stopped before its release task keeps the lease; the next run's sensor asks Airflow for that run's
    state and takes over at once when it has finished, and waits while it still runs."""
    from types import SimpleNamespace

    from ltvfeed.db import dsn_parts
    from ltvfeed.orchestration.tasks import take_warehouse

    settings = stack.settings.model_copy(update={"warehouse_db": dsn_parts(dsn)["dbname"]})
    states = {"ltv_pipeline stopped": "failed", "ltv_pipeline busy": "running"}

    def context(run_id: str) -> dict:
        ti = SimpleNamespace(get_dagrun_state=lambda dag_id, run: states[f"{dag_id} {run}"])
        return {"dag": SimpleNamespace(dag_id="ltv_pipeline"), "run_id": run_id, "ti": ti}

    assert try_acquire(dsn, "ltv_pipeline busy") is None
    assert take_warehouse(settings, context("next")) == "ltv_pipeline busy"
    release(dsn, "ltv_pipeline busy")
    assert try_acquire(dsn, "ltv_pipeline stopped") is None
    assert take_warehouse(settings, context("next")) is None
    assert release(dsn, "ltv_pipeline next") is True
    assert try_acquire(dsn, "process host:1:ab") is None  # a process's build: waited for, never looked up
    assert take_warehouse(settings, context("next")) == "process host:1:ab"

"""dbt model experiment_user_metrics on a tiny hand-made exposure log: every column's value for a few users,
computed by hand (windows, feed-id attribution of clicks, pre-period, long window, LTV predictions in force)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from ltvfeed.dbt_runner import run_dbt
from ltvfeed.experiments.analysis import USER_COLUMNS

pytestmark = pytest.mark.integration


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _experiment(conn: psycopg.Connection, name: str, started: str, stopped: str | None, window: int) -> None:
    conn.execute(
        "insert into ops.experiments (name, config, status, started_at, stopped_at) values (%s, %s, %s, %s, %s)",
        (name, json.dumps({"name": name, "ltv_window_days": window}), "stopped" if stopped else "running",
         ts(started), ts(stopped) if stopped else None),
    )  # fmt: skip


def _exposure(conn: psycopg.Connection, fid: str, experiment: str, arm: str, user: str, at: str) -> None:
    conn.execute(
        "insert into raw.exposures (exposure_id, experiment, arm, user_id, generation, item_ids, positions,"
        " served_at) values (%s, %s, %s, %s, 'g', array['i1', 'i2'], array[1, 2], %s)",
        (fid, experiment, arm, user, ts(at)),
    )


def _event(conn: psycopg.Connection, eid: str, etype: str, user: str | None, at: str, feed_id: str | None) -> None:
    conn.execute(
        "insert into raw.events (event_id, event_type, occurred_at, user_id, item_id, properties)"
        " values (%s, %s, %s, %s, 'i1', %s)",
        (eid, etype, ts(at), user, json.dumps({"feed_id": feed_id}) if feed_id else None),
    )


def _order(conn: psycopg.Connection, oid: str, user: str, at: str, amount: str) -> None:
    conn.execute(
        "insert into raw.orders (order_id, user_id, ordered_at, amount) values (%s, %s, %s, %s)",
        (oid, user, ts(at), Decimal(amount)),
    )


def _prediction(conn: psycopg.Connection, user: str, as_of: str, horizon: int, version: str, rev: int, v: float):
    conn.execute(
        "insert into marts.user_ltv_predictions (user_id, as_of, horizon_days, model_name, model_version,"
        " prob_return, expected_ltv, p10, p50, p90, revision, feature_timestamp)"
        " values (%s, %s, %s, 'ltv', %s, 0.5, %s, 0, 0, 0, %s, %s)",
        (user, as_of, horizon, version, v, rev, ts(f"{as_of} 00:00:00")),
    )


def load(conn: psycopg.Connection) -> None:
    # exp: 2024-03-01 .. stopped 2024-03-05 00:00, long window 7 days; other: running; ghost: not registered
    _experiment(conn, "exp", "2024-03-01 00:00:00", "2024-03-05 00:00:00", 7)
    _experiment(conn, "other", "2024-03-01 00:00:00", None, 30)
    _exposure(conn, "f1", "exp", "treatment", "u1", "2024-03-01 10:00:00")
    _exposure(conn, "f2", "exp", "treatment", "u1", "2024-03-02 10:00:00")
    _exposure(conn, "f3", "exp", "control", "u2", "2024-03-03 23:30:00")
    _exposure(conn, "g1", "other", "b", "u1", "2024-03-03 08:00:00")
    _exposure(conn, "h1", "ghost", "a", "u1", "2024-03-01 00:00:00")
    _event(conn, "c1", "click", "u1", "2024-03-01 09:00:00", None)  # before first exposure
    _event(conn, "c2", "click", "u1", "2024-03-01 11:00:00", None)  # exp: counts
    _event(conn, "c3", "click", "u1", "2024-03-02 11:00:00", "f2")  # exp: its feed
    _event(conn, "c4", "click", "u1", "2024-03-03 09:00:00", "g1")  # other's feed: other only
    _event(conn, "c5", "click", "u1", "2024-03-06 09:00:00", None)  # after exp stopped: other only
    _event(conn, "c6", "click", None, "2024-03-02 12:00:00", "f1")  # anonymous, carries exp's feed id
    _event(conn, "v1", "view", "u1", "2024-03-02 12:00:00", None)  # not a click
    _event(conn, "c7", "click", "u2", "2024-03-02 12:00:00", None)  # u2 before first exposure
    _order(conn, "o0", "u1", "2024-01-01 10:00:00", "100.00")  # > 30 days before: nowhere
    _order(conn, "o1", "u1", "2024-02-20 10:00:00", "30.00")  # pre-period
    _order(conn, "o2", "u1", "2024-03-01 12:00:00", "20.00")  # exp revenue, long window
    _order(conn, "o3", "u1", "2024-03-04 12:00:00", "15.00")  # exp revenue, long window
    _order(conn, "o4", "u1", "2024-03-06 12:00:00", "40.00")  # after stop: long window only
    _order(conn, "o5", "u1", "2024-03-09 12:00:00", "50.00")  # beyond 7 days after 03-01 10:00
    _order(conn, "o6", "u2", "2024-03-03 12:00:00", "25.00")  # u2: before first exposure (pre)
    _prediction(conn, "u1", "2024-02-28", 7, "1", 0, 10.0)
    _prediction(conn, "u1", "2024-03-01", 7, "1", 0, 12.0)
    _prediction(conn, "u1", "2024-03-01", 7, "2", 1, 13.0)  # newer revision of the same snapshot wins
    _prediction(conn, "u1", "2024-03-01", 365, "1", 0, 99.0)  # other horizon: not preferred
    _prediction(conn, "u1", "2024-03-04", 7, "2", 0, 20.0)  # last before exp's stop day
    _prediction(conn, "u1", "2024-03-06", 7, "2", 0, 30.0)  # after exp stopped (other: last)


@pytest.fixture(scope="module")
def metrics(stack, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    from ltvfeed.db import drop_database
    from ltvfeed.warehouse import ensure_warehouse

    name = f"ltvfeed_test_{run_id}_xm_{uuid.uuid4().hex[:6]}"
    dsn = ensure_warehouse(stack.pg_dsn, name)
    env = {**stack.env(), "LTVFEED_DBT_DBNAME": name, "PGOPTIONS": "-c timezone=Pacific/Kiritimati"}
    try:
        with psycopg.connect(dsn) as conn:
            load(conn)
        target: Path = tmp_path_factory.mktemp("dbt_target")
        run_dbt(env, ["build", "--select", "+experiment_user_metrics"], target_path=target)
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            rows = conn.execute("select * from marts.experiment_user_metrics").fetchall()
        yield {(r["experiment"], r["user_id"]): r for r in rows}
    finally:
        drop_database(stack.pg_dsn, name)


def test_columns_are_the_analysis_frame(metrics) -> None:
    row = next(iter(metrics.values()))
    assert list(row) == ["experiment", *USER_COLUMNS[:2], *USER_COLUMNS[2:], "first_exposed_on"]
    assert sorted(metrics) == [("exp", "u1"), ("exp", "u2"), ("other", "u1")]  # ghost is not registered


def test_treated_user_hand_computed(metrics) -> None:
    r = metrics[("exp", "u1")]
    assert (r["arm"], r["exposures"], r["clicks"], r["converted"], r["orders"]) == ("treatment", 2, 3, 1, 2)
    assert (r["revenue"], r["pre_revenue"], r["long_window_revenue"]) == (35.0, 30.0, 75.0)
    assert (r["predicted_ltv_first"], r["predicted_ltv_last"]) == (13.0, 20.0)
    assert str(r["first_exposed_on"]) == "2024-03-01"


def test_control_user_without_outcomes(metrics) -> None:
    r = metrics[("exp", "u2")]
    assert (r["arm"], r["exposures"], r["clicks"], r["converted"], r["orders"]) == ("control", 1, 0, 0, 0)
    assert (r["revenue"], r["pre_revenue"], r["long_window_revenue"]) == (0.0, 25.0, 0.0)
    assert (r["predicted_ltv_first"], r["predicted_ltv_last"]) == (None, None)
    assert str(r["first_exposed_on"]) == "2024-03-03"  # UTC day, whatever the session time zone


def test_clicks_attributed_by_feed_id_to_the_other_experiment(metrics) -> None:
    r = metrics[("other", "u1")]
    # first exposure 03-03 08:00, running: c4 (its feed) and c5 (no feed id); c3 carries exp's feed id
    assert (r["arm"], r["exposures"], r["clicks"]) == ("b", 1, 2)
    # orders from 03-03 08:00 on: o3, o4, o5; pre-period (30 days back): o1, o2; window 30 days: o3..o5
    assert (r["orders"], r["revenue"], r["pre_revenue"], r["long_window_revenue"]) == (3, 105.0, 50.0, 105.0)
    assert (r["predicted_ltv_first"], r["predicted_ltv_last"]) == (13.0, 30.0)

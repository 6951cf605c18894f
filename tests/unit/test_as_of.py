"""The one cutoff rule (ltvfeed.cutoff) and the LTV defaults derived from a shop's history."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from ltvfeed.cutoff import (
    DEFAULT_HORIZON_DAYS,
    MIN_FEATURE_HISTORY_DAYS,
    cutoff_instant,
    default_ltv_horizon,
    parse_as_of,
    required_as_of,
    resolve_as_of,
)
from ltvfeed.errors import UserError


def test_explicit_param_wins():
    logical = datetime(2026, 5, 1, tzinfo=UTC)
    assert resolve_as_of({"as_of": "2026-03-02"}, logical, None) == date(2026, 3, 2)


def test_logical_date_then_run_after():
    assert resolve_as_of({}, datetime(2026, 5, 1, 0, 0, tzinfo=UTC), None) == date(2026, 5, 1)
    assert resolve_as_of({"as_of": None}, None, datetime(2026, 6, 7, 13, 5, tzinfo=UTC)) == date(2026, 6, 7)


def test_bad_param_names_the_problem():
    with pytest.raises(UserError, match="as_of must be a date"):
        resolve_as_of({"as_of": "yesterday"}, None, None)
    with pytest.raises(UserError, match="neither"):
        resolve_as_of({}, None, None)


def test_asset_event_then_fallback_then_run_after():
    run_after = datetime(2026, 6, 9, 3, tzinfo=UTC)
    named = SimpleNamespace(timestamp=datetime(2026, 6, 8, tzinfo=UTC), extra={"as_of": "2026-06-02"})
    older = SimpleNamespace(timestamp=datetime(2026, 6, 1, tzinfo=UTC), extra={"as_of": "2026-05-30"})
    assert resolve_as_of({}, None, run_after, {"marts": [older, named]}) == date(2026, 6, 2)  # newest event
    assert resolve_as_of({}, None, run_after, {}, fallback=lambda: date(2026, 1, 1)) == date(2026, 1, 1)
    assert resolve_as_of({}, None, run_after, {}) == date(2026, 6, 9)


def test_cutoff_instant_is_midnight_utc_and_parse_accepts_datetimes():
    assert cutoff_instant(date(2017, 3, 1)) == datetime(2017, 3, 1, tzinfo=UTC)
    assert parse_as_of(datetime(2017, 3, 1, 23, tzinfo=UTC)) == date(2017, 3, 1)
    assert parse_as_of("") is None and parse_as_of(date(2017, 3, 1)) == date(2017, 3, 1)


def test_a_required_as_of_missing_or_bad_is_the_same_one_line_error():
    assert required_as_of("2024-05-01", "holdout_cutoff") == date(2024, 5, 1)
    for value in (None, "", "May 1"):
        with pytest.raises(UserError, match=r"^holdout_cutoff must be a date YYYY-MM-DD, got "):
            required_as_of(value, "holdout_cutoff")


def test_default_horizon_is_365_when_the_history_allows():
    end = date(2026, 11, 1)
    horizon, holdout = default_ltv_horizon(end - timedelta(days=3 * 365), end)
    assert (horizon, holdout) == (DEFAULT_HORIZON_DAYS, end - timedelta(days=DEFAULT_HORIZON_DAYS))


@pytest.mark.parametrize("days,n_cutoffs", [(120, 1), (120, 2), (61, 1), (400, 3)])
def test_default_horizon_fits_a_short_history(days, n_cutoffs):
    first, end = date(2017, 1, 1), date(2017, 1, 1) + timedelta(days=days)
    horizon, holdout = default_ltv_horizon(first, end, n_cutoffs, 30)
    assert holdout + timedelta(days=horizon) == end  # the holdout's labels are complete at the data's end
    earliest = holdout - timedelta(days=horizon) - timedelta(days=30 * (n_cutoffs - 1))
    assert (earliest - first).days >= MIN_FEATURE_HISTORY_DAYS  # the earliest cutoff has history behind it
    assert (earliest - first).days < MIN_FEATURE_HISTORY_DAYS + 2  # and H is the longest that fits


def test_too_short_a_history_is_refused_naming_the_params():
    with pytest.raises(UserError, match="horizon_days") as err:
        default_ltv_horizon(date(2017, 1, 1), date(2017, 1, 20))
    assert "19 day(s)" in str(err.value)


def test_retrain_plan_without_horizon_fits_the_history():
    from ltvfeed.orchestration.ltv_tasks import plan_from_params

    as_of = date(2017, 7, 1)
    history = (date(2017, 3, 3), date(2017, 7, 1))  # 120 days of orders
    plan = plan_from_params(as_of, {"horizon_days": None, "train_cutoffs": 2}, history)
    assert plan.holdout_cutoff + timedelta(days=plan.horizon_days) == as_of
    assert plan.train_cutoffs[0] >= history[0] + timedelta(days=MIN_FEATURE_HISTORY_DAYS)
    # the shop's data ends before as_of: the holdout follows the data's end, not as_of
    plan = plan_from_params(date(2017, 9, 1), {}, history)
    assert plan.holdout_cutoff + timedelta(days=plan.horizon_days) == history[1]


def test_retrain_plan_with_a_horizon_too_long_is_refused_saying_what_fits():
    from ltvfeed.orchestration.ltv_tasks import plan_from_params

    with pytest.raises(UserError, match=r"horizon_days=365.*horizon_days=53 fits it"):
        plan_from_params(date(2017, 7, 1), {"horizon_days": 365}, (date(2017, 3, 3), date(2017, 7, 1)))

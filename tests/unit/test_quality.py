"""The data-quality gate without a database: as_of bounds, config errors, that the raw suites cover every table
and the marts suites name real dbt columns, and readable failure texts. The gate on real warehouses is in
tests/integration/test_quality.py."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import yaml

from ltvfeed.dbt_runner import dbt_project_dir
from ltvfeed.errors import UserError
from ltvfeed.quality import GateConfig
from ltvfeed.quality.config import future_bound, raw_parameters, stale_bound
from ltvfeed.quality.mart_suites import mart_suites
from ltvfeed.quality.outcomes import expected_text, observed_text
from ltvfeed.quality.raw_suites import raw_suites
from ltvfeed.warehouse import RAW_ENTITIES

AS_OF = date(2026, 3, 1)
CUTOFF = datetime(2026, 3, 1, tzinfo=UTC)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------- no database


def test_bounds_follow_as_of_and_allow_backfills() -> None:
    assert stale_bound(AS_OF, 3) == ts("2026-02-26 00:00:00")
    # daily run: one day past as_of; backfill of an old as_of: raw already holds later data, bound follows today
    assert future_bound(AS_OF, today=AS_OF) == ts("2026-03-02 00:00:00")
    assert future_bound(AS_OF, today=date(2026, 6, 30)) == ts("2026-07-01 00:00:00")
    params = raw_parameters(AS_OF, AS_OF, GateConfig(stale_after_days={"events": 2}))
    assert params["events_latest_min"] == "2026-02-27T00:00:00+00:00"
    assert "orders_latest_min" not in params


def test_bad_config_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown raw table"):
        GateConfig(required_tables=("customers",))


def test_raw_suites_cover_every_table_and_ask_freshness_only_of_streams_with_data() -> None:
    def freshness_tables(non_empty: frozenset[str]) -> set[str]:
        return {
            s.table
            for s in raw_suites(GateConfig(), non_empty)
            for r in s.rules
            if r.expectation == "ExpectColumnMaxToBeBetween"
        }

    assert [s.table for s in raw_suites(GateConfig(), frozenset())] == [f"raw.{t}" for t in RAW_ENTITIES]
    # orders is required, so always checked; events only once the shop sends any (transaction-log-only shops)
    assert freshness_tables(frozenset()) == {"raw.orders"}
    assert freshness_tables(frozenset(RAW_ENTITIES)) == {"raw.orders", "raw.events"}


def test_mart_columns_exist_in_the_dbt_models() -> None:
    """Every column the marts suites read is declared in the dbt models' yml (catches renames on either side)."""
    docs = [yaml.safe_load(p.read_text()) for p in (dbt_project_dir() / "models" / "marts").glob("*.yml")]
    declared = {m["name"]: {c["name"] for c in m.get("columns", [])} for d in docs for m in d.get("models", [])}
    for suite in mart_suites(max_rows=10):
        model = suite.table.split(".", 1)[1]
        used = {r.column for r in suite.rules if r.column} | ({suite.snapshot_column} - {None})
        assert used - declared[model] == set(), f"{model}: columns not in the dbt model"


def test_failure_texts_are_readable() -> None:
    assert expected_text("expect_column_values_to_be_between", {"min_value": 0, "max_value": 86400}, None) == (
        ">= 0 and <= 86400"
    )
    assert expected_text("expect_column_values_to_be_between", {"max_value": CUTOFF, "strict_max": True}, None) == (
        "< 2026-03-01 00:00:00+00:00"
    )
    assert expected_text("expect_column_values_to_not_be_null", {"column": "x"}, "why") == "why [not null]"
    observed = observed_text(
        "expect_column_values_to_be_in_set",
        {"element_count": 1204, "unexpected_count": 2, "partial_unexpected_list": ["teleport", "warp"]},
        None,
    )
    assert observed == "2 of 1,204 rows unexpected, e.g. 'teleport', 'warp'"
    assert observed_text("unexpected_rows_expectation", {"observed_value": 3}, None) == "3 offending rows"
    assert observed_text("x", {}, "column missing") == "error: column missing"

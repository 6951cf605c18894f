"""The data-quality gate against real warehouses with a few hand-inserted rows: a clean raw load passes and
builds Data Docs, planted problems (an unknown event type, a 10-day dwell time, a duplicate-looking order, a
timestamp in the future, stale streams) fail it by name, and the marts suites pass and fail on hand-made mart
tables (no dbt needed). Suites and messages without a database are in tests/unit/test_quality.py.

GX takes seconds to import and each gate run a few more, so these tests share one GX project directory (which
also exercises re-syncing an existing project) and keep to one gate run where they can.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from ltvfeed.errors import UserError
from ltvfeed.quality import DataQualityError, run_gate
from ltvfeed.quality import mart_suites as marts
from ltvfeed.warehouse import RAW_ENTITIES
from tests.unit.test_quality import AS_OF, CUTOFF, ts

# ------------------------------------------------------------------------------------------ with a warehouse


@pytest.fixture(scope="module")
def gx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One GX project for the module: created by the first gate run, re-synced by the others."""
    return tmp_path_factory.mktemp("gx")


def _insert(dsn: str, sql: str, rows: list[tuple]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(sql, rows)


def _clean_raw_shop(dsn: str) -> None:
    """Two customers, two items, three orders, a handful of events and preferences: all plausible, latest
    activity on the last day before AS_OF."""
    _insert(
        dsn,
        "insert into raw.users (user_id, signup_at, country, birth_year, gender) values (%s, %s, %s, %s, %s)",
        [("u1", ts("2025-06-01 10:00:00"), "DE", 1985, "f"), ("u2", ts("2025-12-24 08:30:00"), "FR", None, None)],
    )
    _insert(
        dsn,
        "insert into raw.items (item_id, category, price, created_at) values (%s, %s, %s, %s)",
        [("i1", "books", 12.5, ts("2024-01-01 00:00:00")), ("i2", "garden", 0, None)],
    )
    _insert(
        dsn,
        "insert into raw.orders (order_id, user_id, ordered_at, amount) values (%s, %s, %s, %s)",
        [
            ("o1", "u1", ts("2026-01-10 12:00:00"), 25.0),
            ("o2", "u1", ts("2026-02-27 18:00:00"), 12.5),
            ("o3", "u2", ts("2026-02-28 09:15:00"), 0),
        ],
    )
    _insert(
        dsn,
        "insert into raw.order_items (order_id, item_id, quantity, unit_price) values (%s, %s, %s, %s)",
        [("o1", "i1", 2, 12.5), ("o2", "i1", 1, 12.5), ("o3", "i2", 1, 0)],
    )
    _insert(
        dsn,
        "insert into raw.events (event_id, event_type, occurred_at, user_id, session_id, item_id, dwell_seconds)"
        " values (%s, %s, %s, %s, %s, %s, %s)",
        [
            ("e1", "view", ts("2026-02-27 17:58:00"), "u1", "s1", "i1", 40.5),
            ("e2", "add_to_cart", ts("2026-02-27 17:59:00"), "u1", "s1", "i1", None),
            ("e3", "search", ts("2026-02-28 09:00:00"), "u2", "s2", None, None),
            ("e4", "view", ts("2026-02-28 23:59:59"), None, "s3", "i2", 0),
        ],
    )
    _insert(
        dsn,
        "insert into raw.preferences (user_id, kind, item_id, category, created_at) values (%s, %s, %s, %s, %s)",
        [("u1", "wishlist", "i2", None, ts("2026-02-01 00:00:00")), ("u2", "profile_category", None, "books", CUTOFF)],
    )


def _failures(exc: DataQualityError) -> set[tuple[str, str | None, str]]:
    return {(o.table, o.column, o.expectation) for o in exc.result.failures}


@pytest.mark.integration
def test_clean_raw_load_passes_and_builds_data_docs(warehouse_dsn: str, tmp_path: Path) -> None:
    _clean_raw_shop(warehouse_dsn)
    result = run_gate(warehouse_dsn, "raw", AS_OF, tmp_path)

    assert result.success
    assert {o.table for o in result.outcomes} == {f"raw.{t}" for t in RAW_ENTITIES}
    assert len(result.outcomes) > 40
    assert result.data_docs_path == tmp_path / "data_docs" / "index.html"
    assert result.data_docs_path.is_file()
    assert "raw.events" in result.data_docs_path.read_text()
    # GX state stays in the given directory, without the warehouse address in it
    assert (tmp_path / "great_expectations.yml").is_file()
    written = "".join(p.read_text(errors="ignore") for p in tmp_path.rglob("*.yml"))
    assert "${ltvfeed_warehouse_url}" in written and "127.0.0.1" not in written


@pytest.mark.integration
def test_planted_bad_rows_fail_the_raw_gate_by_name(warehouse_dsn: str, gx_dir: Path) -> None:
    _clean_raw_shop(warehouse_dsn)
    # what the database accepts but the gate must not: an unknown event type, 10 days on one page, a clock
    # 70 years ahead, and the same order re-sent under a new id
    _insert(
        warehouse_dsn,
        "insert into raw.events (event_id, event_type, occurred_at, user_id, session_id, dwell_seconds)"
        " values (%s, %s, %s, %s, %s, %s)",
        [
            ("bad1", "teleport", ts("2026-02-28 10:00:00"), "u1", "s9", None),
            ("bad2", "view", ts("2026-02-28 11:00:00"), "u1", "s9", 10 * 86400.0),
            ("bad3", "click", ts("2096-02-28 11:00:00"), "u2", "s8", None),
        ],
    )
    _insert(
        warehouse_dsn,
        "insert into raw.orders (order_id, user_id, ordered_at, amount) values (%s, %s, %s, %s)",
        [("o2-resent", "u1", ts("2026-02-27 18:00:00"), 12.5)],
    )

    with pytest.raises(DataQualityError) as caught:
        run_gate(warehouse_dsn, "raw", AS_OF, gx_dir)

    assert _failures(caught.value) == {
        ("raw.events", "event_type", "expect_column_values_to_be_in_set"),
        ("raw.events", "dwell_seconds", "expect_column_values_to_be_between"),
        ("raw.events", "occurred_at", "expect_column_values_to_be_between"),  # the future event
        ("raw.events", "occurred_at", "expect_column_max_to_be_between"),  # ... makes the newest one future
        ("raw.orders", None, "unexpected_rows_expectation"),  # duplicate-looking order
    }
    message = str(caught.value)
    assert "data quality gate 'raw' for as_of 2026-03-01: FAILED (5 of" in message
    assert "raw.events.event_type: expect_column_values_to_be_in_set" in message
    assert "1 of 7 rows unexpected, e.g. 'teleport'" in message
    assert "raw.events.dwell_seconds: expect_column_values_to_be_between (>= 0 and <= 86400): " in message
    assert "e.g. 864000" in message
    assert "duplicate-looking orders" in message and "1 offending rows" in message
    assert "2096-02-28 11:00:00" in message
    assert f"Data Docs: {gx_dir / 'data_docs' / 'index.html'}" in message
    assert (gx_dir / "data_docs" / "index.html").is_file()


@pytest.mark.integration
def test_stale_streams_fail_freshness(warehouse_dsn: str, gx_dir: Path) -> None:
    """The clean shop checked three weeks later: events are stale (3 days allowed), orders (14) too."""
    _clean_raw_shop(warehouse_dsn)
    later = AS_OF + timedelta(days=21)
    with pytest.raises(DataQualityError) as caught:
        run_gate(warehouse_dsn, "raw", later, gx_dir)

    assert _failures(caught.value) == {
        ("raw.events", "occurred_at", "expect_column_max_to_be_between"),
        ("raw.orders", "ordered_at", "expect_column_max_to_be_between"),
    }
    assert "fresh: the newest occurred_at is at most 3 days older than as_of" in str(caught.value)
    assert ">= 2026-03-19 00:00:00+00:00" in str(caught.value)  # as_of 2026-03-22 minus 3 days


# -------------------------------------------------------------------------------------------------- marts


def _column_ddl() -> str:
    """Hand-made marts tables holding just the columns the suites read (types as the dbt models make them)."""
    ints = set(marts.USER_FEATURES_AT_LEAST_ONE_DAY)
    user_features = ", ".join(
        [
            "user_id text",
            "as_of date",
            "feature_timestamp timestamptz",
            *(f"{c} integer" for c in marts.USER_FEATURES_AT_LEAST_ONE_DAY),
            *(
                f"{c} double precision default 0"
                for c in (*marts.USER_FEATURES_NON_NEGATIVE, *marts.USER_FEATURES_RATES)
                if c not in ints
            ),
            *(f"{c} timestamptz" for c in marts.USER_FEATURES_BEFORE_CUTOFF),
        ]
    )
    item_performance = ", ".join(
        [
            "item_id text",
            "as_of date",
            *(
                f"{c} double precision default 0"
                for c in (*marts.ITEM_PERFORMANCE_SCORES, *marts.ITEM_PERFORMANCE_NON_NEGATIVE)
            ),
            *(f"{c} timestamptz" for c in marts.ITEM_PERFORMANCE_BEFORE_CUTOFF),
        ]
    )
    return f"""
        create table marts.user_features ({user_features});
        create table marts.item_performance ({item_performance});
        create table marts.ltv_labels (user_id text, cutoff date, horizon_days integer, window_end date,
            revenue numeric(14, 2), orders integer, is_complete boolean);
        create table marts.user_category_propensity (user_id text, category text, as_of date,
            propensity double precision);
    """


def _good_marts(dsn: str) -> None:
    """A snapshot for AS_OF (plus an older one, which the gate must leave alone) over the clean raw shop."""
    with psycopg.connect(dsn) as conn:
        conn.execute(_column_ddl())
        for as_of in (AS_OF - timedelta(days=1), AS_OF):
            cut = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
            conn.execute(
                "insert into marts.user_features (user_id, as_of, feature_timestamp, recency_days, tenure_days,"
                " days_since_last_event, frequency, monetary_total, monetary_avg, click_per_view_30d,"
                " last_order_at, first_seen_at) values"
                " ('u1', %(d)s, %(c)s, 2, 273, 2, 2, 37.5, 18.75, 0.5, %(o)s, '2025-06-01 10:00Z'),"
                " ('u2', %(d)s, %(c)s, 1, 67, 1, 1, 0, 0, 0, null, '2025-12-24 08:30Z')",
                {"d": as_of, "c": cut, "o": ts("2026-02-27 18:00:00")},
            )
            conn.execute(
                "insert into marts.item_performance (item_id, as_of, commercial_score, add_to_cart_rate_30d,"
                " views_30d, revenue_30d, price, last_sold_at) values"
                " ('i1', %(d)s, 1.0, 1.0, 1, 12.5, 12.5, '2026-02-27 18:00Z'), ('i2', %(d)s, 0, 0, 1, 0, 0, null)",
                {"d": as_of},
            )
            conn.execute(
                "insert into marts.user_category_propensity values ('u1', 'books', %(d)s, 0.75),"
                " ('u1', 'garden', %(d)s, 0.25), ('u2', 'books', %(d)s, 1.0)",
                {"d": as_of},
            )
            conn.execute(
                "insert into marts.ltv_labels values ('u1', %(d)s, 90, %(d)s::date + 90, 0, 0, false),"
                " ('u2', %(d)s, 90, %(d)s::date + 90, 10, 1, false)",
                {"d": as_of},
            )


@pytest.fixture
def marts_dsn(warehouse_dsn: str) -> Iterator[str]:
    _clean_raw_shop(warehouse_dsn)
    _good_marts(warehouse_dsn)
    yield warehouse_dsn


@pytest.mark.integration
def test_good_marts_pass(marts_dsn: str, gx_dir: Path) -> None:
    result = run_gate(marts_dsn, "marts", AS_OF, gx_dir)
    assert result.success
    assert {o.table for o in result.outcomes} == {
        "marts.user_features",
        "marts.item_performance",
        "marts.ltv_labels",
        "marts.user_category_propensity",
    }


@pytest.mark.integration
def test_bad_marts_fail_by_name(marts_dsn: str, gx_dir: Path) -> None:
    with psycopg.connect(marts_dsn) as conn:
        # a same-day order leaking into the features, a share above 1, a negative label, a duplicated item;
        # the older snapshot gets a bad value too, which the gate must NOT report (it checks AS_OF only)
        conn.execute(
            "update marts.user_features set recency_days = 0, last_order_at = %s where user_id = 'u1'",
            (ts("2026-03-01 08:00:00"),),
        )
        conn.execute("update marts.user_category_propensity set propensity = 1.5 where user_id = 'u2'")
        conn.execute("update marts.ltv_labels set revenue = -10 where user_id = 'u2' and cutoff = %s", (AS_OF,))
        conn.execute(
            "insert into marts.item_performance (item_id, as_of, commercial_score) values ('i1', %s, 0.5)", (AS_OF,)
        )
        conn.execute("update marts.item_performance set commercial_score = 7 where as_of < %s", (AS_OF,))

    with pytest.raises(DataQualityError) as caught:
        run_gate(marts_dsn, "marts", AS_OF, gx_dir)

    assert _failures(caught.value) == {
        ("marts.user_features", "recency_days", "expect_column_values_to_be_between"),
        ("marts.user_features", "last_order_at", "expect_column_values_to_be_between"),
        ("marts.user_category_propensity", "propensity", "expect_column_values_to_be_between"),
        ("marts.user_category_propensity", None, "unexpected_rows_expectation"),  # no longer sums to 1
        ("marts.ltv_labels", "revenue", "expect_column_values_to_be_between"),
        ("marts.item_performance", "item_id", "expect_column_values_to_be_unique"),
        ("marts.item_performance", None, "expect_table_row_count_to_be_between"),  # 3 rows, 2 items known
    }
    message = str(caught.value)
    assert "marts.user_features.last_order_at: expect_column_values_to_be_between (< 2026-03-01 00:00:00+00:00)" in (
        message
    )
    assert "marts.user_category_propensity.propensity" in message and "e.g. 1.5" in message


@pytest.mark.integration
def test_gate_on_some_marts_checks_only_those(marts_dsn: str, gx_dir: Path) -> None:
    """A snapshot built for some marts only (ltvfeed.warehouse.snapshots) is gated on those: failures elsewhere are not
    its business, and a list no suite checks is an error, not a pass that checked nothing."""
    with psycopg.connect(marts_dsn) as conn:
        conn.execute("update marts.user_category_propensity set propensity = 1.5 where user_id = 'u2'")
        conn.execute("delete from marts.item_performance where as_of = %s", (AS_OF,))  # not built for AS_OF
    assert run_gate(marts_dsn, "marts", AS_OF, gx_dir, tables=("marts.user_features",)).success
    with pytest.raises(DataQualityError) as caught:
        run_gate(marts_dsn, "marts", AS_OF, gx_dir, tables=("marts.user_features", "marts.user_category_propensity"))
    assert {table for table, _, _ in _failures(caught.value)} == {"marts.user_category_propensity"}
    with pytest.raises(UserError, match=r"no marts expectation suite checks any of marts\.nothing"):
        run_gate(marts_dsn, "marts", AS_OF, gx_dir, tables=("marts.nothing",))


@pytest.mark.integration
def test_missing_marts_fail_and_still_build_docs(warehouse_dsn: str, tmp_path: Path) -> None:
    _clean_raw_shop(warehouse_dsn)
    with pytest.raises(DataQualityError) as caught:
        run_gate(warehouse_dsn, "marts", AS_OF, tmp_path)
    assert {(o.table, o.expectation) for o in caught.value.result.failures} == {
        (t, "table_exists")
        for t in ("marts.user_features", "marts.item_performance", "marts.ltv_labels", "marts.user_category_propensity")
    }
    assert (tmp_path / "data_docs" / "index.html").is_file()


@pytest.mark.integration
def test_cli_prints_the_table_and_exits_non_zero(
    stack, warehouse_dsn: str, gx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ltvfeed.cli import app
    from ltvfeed.db import dsn_parts
    from ltvfeed.settings import get_settings

    _clean_raw_shop(warehouse_dsn)
    for name, value in {
        "LTVFEED_PG_DSN": stack.pg_dsn,
        "LTVFEED_REDIS_URL": stack.redis_url,
        "LTVFEED_STATE_DIR": str(tmp_path),
        "LTVFEED_WAREHOUSE_DB": dsn_parts(warehouse_dsn)["dbname"],
        "LTVFEED_MLFLOW_DB": stack.settings.mlflow_db,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        later = (AS_OF + timedelta(days=21)).isoformat()
        outcome = CliRunner().invoke(app, ["quality", "check", "raw", "--as-of", later])
    finally:
        get_settings.cache_clear()

    assert outcome.exit_code == 1, outcome.output
    assert "raw.events" in outcome.output and "FAIL" in outcome.output
    assert "raw.users" in outcome.output and "pass" in outcome.output
    assert f"Data Docs: {tmp_path / 'gx' / 'data_docs' / 'index.html'}" in outcome.output


_GATE_SCRIPT = """
import sys
from datetime import date
from pathlib import Path
from ltvfeed.quality import run_gate
run_gate(sys.argv[1], sys.argv[2], date.fromisoformat(sys.argv[3]), Path(sys.argv[4]))
"""


@pytest.mark.integration
def test_overlapping_gates_on_one_project_all_pass(marts_dsn: str, tmp_path: Path) -> None:
    """Issue 10 (concurrency): runs for different cutoffs overlap (Airflow backfills run up to 10 at once).
    Raw and marts gates for two as_of dates, in four processes at once on one fresh GX project, all pass and
    leave a project file that parses."""
    import subprocess
    import sys

    project = tmp_path / "gx"
    runs = [(layer, day) for layer in ("raw", "marts") for day in (AS_OF, AS_OF - timedelta(days=1))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _GATE_SCRIPT, marts_dsn, layer, day.isoformat(), str(project)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for layer, day in runs
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    failed = [(run, out[-2000:]) for run, p, out in zip(runs, procs, outputs, strict=True) if p.returncode != 0]
    assert not failed, failed
    config = yaml.safe_load((project / "great_expectations.yml").read_text())
    assert {"warehouse_raw", "warehouse_marts"} <= set(config["fluent_datasources"])
    assert (project / "data_docs" / "index.html").is_file()

"""Expectation suites for the raw landing tables (schema in ltvfeed/sql/warehouse.sql).

What a "raw batch" is here: the WHOLE table, every run. GX computes each expectation as one aggregate SQL
query inside PostgreSQL (only up to 20 example values come back), so a full pass over a shop's raw tables
costs seconds, and it buys three things a "rows loaded since the last successful check" watermark would not:
uniqueness and duplicate-looking rows are caught across loads, not only within one; a bad row keeps failing
the gate until someone fixes or deletes it (nothing to forget once a watermark moved on, no watermark state
to lose); and a re-run or a backfill of any as_of sees exactly what dbt will read. If raw tables ever grow
past what a daily full scan allows, the place to narrow it is ``gx_project._add_asset`` (a query asset
over ``_loaded_at``), not the suites.

Import checks already quarantine malformed rows and the schema has CHECK constraints and keys; these suites
re-state that contract (so a change of either shows up) and add what row-by-row checks cannot see: sets of
allowed values, plausible ranges, duplicates under different ids, row counts and freshness.
"""

from __future__ import annotations

from ltvfeed.quality.config import EARLIEST_PLAUSIBLE, GateConfig, iso
from ltvfeed.quality.rules import (
    Rule,
    TableSuite,
    between,
    in_set,
    latest_between,
    no_rows,
    not_null,
    param,
    row_count,
    unique,
    unique_together,
)
from ltvfeed.warehouse import EVENT_TYPES, PREFERENCE_KINDS, RAW_ENTITIES

MAX_DWELL_SECONDS = 86_400  # one day on one page: beyond that the client's clock or sessionising is broken

# The stream tables whose newest row says whether data still arrives: table -> timestamp column.
FRESHNESS_COLUMNS = {"events": "occurred_at", "orders": "ordered_at"}


def _timestamps(*columns: str) -> list[Rule]:
    """Neither parse garbage (before 1990) nor the future (after the run's future bound)."""
    return [between(c, iso(EARLIEST_PLAUSIBLE), param("future_bound")) for c in columns]


def _rules(table: str) -> list[Rule]:
    if table == "users":
        return [
            *not_null("user_id", "signup_at"),
            unique("user_id"),
            *_timestamps("signup_at"),
            between("birth_year", 1900, param("birth_year_max")),
        ]
    if table == "items":
        return [
            *not_null("item_id", "category", "price", "in_stock"),
            unique("item_id"),
            between("price", 0),
            *_timestamps("created_at"),
        ]
    if table == "orders":
        return [
            *not_null("order_id", "user_id", "ordered_at", "amount"),
            unique("order_id"),
            between("amount", 0),
            *_timestamps("ordered_at"),
            unique_together(
                ("user_id", "ordered_at", "amount"),
                "no duplicate-looking orders: same customer, instant and amount under different order ids",
            ),
        ]
    if table == "order_items":
        return [
            *not_null("order_id", "item_id", "quantity", "unit_price"),
            unique_together(("order_id", "item_id")),
            between("quantity", 1),
            between("unit_price", 0),
        ]
    if table == "events":
        return [
            *not_null("event_id", "event_type", "occurred_at", "source"),
            unique("event_id"),
            in_set("event_type", EVENT_TYPES),
            *_timestamps("occurred_at"),
            between("dwell_seconds", 0, MAX_DWELL_SECONDS),
            between("amount", 0),
            unique_together(
                ("event_type", "occurred_at", "user_id", "session_id", "item_id"),
                "no duplicate-looking events: same type, instant, user, session and item under different event ids",
            ),
            no_rows(
                "select event_id from {batch} where user_id is null and session_id is null",
                "every event belongs to a user or a session",
            ),
        ]
    if table == "preferences":
        return [
            *not_null("user_id", "kind", "created_at"),
            in_set("kind", PREFERENCE_KINDS),
            *_timestamps("created_at"),
            unique_together(("user_id", "kind", "item_id", "category")),
            no_rows(
                "select user_id, kind from {batch} where item_id is null and category is null",
                "every preference names an item or a category",
            ),
        ]
    raise ValueError(f"no raw suite for table {table!r}")


def raw_suites(config: GateConfig, non_empty: frozenset[str]) -> list[TableSuite]:
    """One suite per raw table. ``non_empty``: the raw tables holding rows now; freshness is only asked of a
    stream table that is required or has data (an absent stream is the row-count rule's business)."""
    suites = []
    for table in RAW_ENTITIES:
        required = table in config.required_tables
        rules = [row_count(1 if required else 0, config.max_rows), *_rules(table)]
        column = FRESHNESS_COLUMNS.get(table)
        if column and table in config.stale_after_days and (required or table in non_empty):
            days = config.stale_after_days[table]
            rules.append(
                latest_between(
                    column,
                    param(f"{table}_latest_min"),
                    param("future_bound"),
                    f"fresh: the newest {column} is at most {days} days older than as_of, and not in the future",
                )
            )
        suites.append(TableSuite(layer="raw", table=f"raw.{table}", rules=tuple(rules)))
    return suites

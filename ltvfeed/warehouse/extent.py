"""Where the warehouse's data starts and ends, as dbt's ``data_end_date`` defines it: the day after the latest
raw event or order (UTC). A window ending later than that is not fully observed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from ltvfeed.cutoff import cutoff_instant
from ltvfeed.db import connect

DATA_END_SQL = """(greatest((select max(occurred_at) from raw.events), (select max(ordered_at) from raw.orders))
    at time zone 'UTC')::date + 1"""


def data_end(dsn: str) -> date | None:
    """The first day not yet observed; None without events or orders."""
    with connect(dsn, autocommit=True) as conn:
        return conn.execute(f"select {DATA_END_SQL}").fetchone()[0]


def data_range(dsn: str) -> tuple[date, date] | None:
    """(first day with a customer, first day not yet observed); None without data."""
    with connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "select (least((select min(ordered_at) from raw.orders), (select min(signup_at) from raw.users))"
            f" at time zone 'UTC')::date, {DATA_END_SQL}"
        ).fetchone()
    if row is None or row[0] is None or row[1] is None:
        return None
    return row[0], row[1]


def first_day_before(dsn: str, as_of: date, *, signups: bool = True) -> date | None:
    """First UTC day with an order (or a signup, with ``signups``) before ``as_of``: later data never moves it."""
    signup = "(select min(signup_at) from raw.users where signup_at < %(cut)s)" if signups else "null"
    with connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "select (least((select min(ordered_at) from raw.orders where ordered_at < %(cut)s), "
            f"{signup}) at time zone 'UTC')::date",
            {"cut": cutoff_instant(as_of)},
        ).fetchone()
    return row[0] if row else None


def known_entities(dsn: str) -> tuple[int, int]:
    """(customers, items) the raw tables know of anywhere: a mart snapshot can hold at most these."""
    with connect(dsn, autocommit=True) as conn:
        customers = conn.execute(
            "select count(*) from (select user_id from raw.users union select user_id from raw.orders) c"
        ).fetchone()[0]
        items = conn.execute(
            "select count(*) from (select item_id from raw.items union select item_id from raw.order_items "
            "union select item_id from raw.events where item_id is not null) i"
        ).fetchone()[0]
    return int(customers), int(items)


def raw_entities_with_rows(dsn: str) -> frozenset[str]:
    """The raw entities (``RAW_ENTITIES``) whose table exists and holds at least one row."""
    from ltvfeed.warehouse import RAW_ENTITIES

    with connect(dsn, autocommit=True) as conn:
        return frozenset(
            t
            for t in RAW_ENTITIES
            if conn.execute("select to_regclass(%s) is not null", (f"raw.{t}",)).fetchone()[0]
            and conn.execute(f"select exists (select 1 from raw.{t})").fetchone()[0]
        )


def table_counts(dsn: str, tables: Sequence[str]) -> dict[str, int | None]:
    """Row counts of ``tables`` (schema-qualified names); None for a table that does not exist (yet)."""
    counts: dict[str, int | None] = {}
    with connect(dsn, autocommit=True) as conn:
        for table in tables:
            exists = conn.execute("select to_regclass(%s)", (table,)).fetchone()[0]
            counts[table] = conn.execute(f"select count(*) from {exists}").fetchone()[0] if exists else None
    return counts

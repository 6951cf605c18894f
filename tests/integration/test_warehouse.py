"""The warehouse package's reads on a hand-made warehouse: where the data starts and ends, what the raw tables know,
which snapshots exist, and the champion's top customer. Each value below follows from the rows inserted here."""

from __future__ import annotations

from datetime import date

import pytest

from ltvfeed.db import connect

pytestmark = pytest.mark.integration


def _insert(dsn: str) -> None:
    with connect(dsn) as conn:
        conn.execute(
            "insert into raw.users (user_id, signup_at) values ('u1', '2026-01-03 10:00Z'), ('u2', '2026-02-01 00:00Z')"
        )
        conn.execute("insert into raw.items (item_id, category, price) values ('i1', 'books', 10), ('i2', 'toys', 5)")
        conn.execute(
            "insert into raw.orders (order_id, user_id, ordered_at, amount) values "
            "('o1', 'u1', '2026-01-05 12:00Z', 10), ('o2', 'u3', '2026-02-10 23:59:59Z', 5)"
        )
        conn.execute(
            "insert into raw.order_items (order_id, item_id, quantity, unit_price) values "
            "('o1', 'i1', 1, 10), ('o2', 'i3', 1, 5)"
        )
        conn.execute(
            "insert into raw.events (event_id, event_type, occurred_at, user_id, item_id) values "
            "('e1', 'view', '2026-02-20 08:00Z', 'u2', 'i4')"
        )


def test_extent_of_the_data(warehouse_dsn: str) -> None:
    from ltvfeed.warehouse.extent import (
        data_end,
        data_range,
        first_day_before,
        known_entities,
        raw_entities_with_rows,
        table_counts,
    )

    assert data_end(warehouse_dsn) is None and data_range(warehouse_dsn) is None
    assert raw_entities_with_rows(warehouse_dsn) == frozenset()
    _insert(warehouse_dsn)
    assert data_end(warehouse_dsn) == date(2026, 2, 21)  # the day after the latest event (later than any order)
    assert data_range(warehouse_dsn) == (date(2026, 1, 3), date(2026, 2, 21))  # the first signup starts it
    assert first_day_before(warehouse_dsn, date(2026, 1, 5)) == date(2026, 1, 3)
    assert first_day_before(warehouse_dsn, date(2026, 1, 5), signups=False) is None  # o1 is on the cutoff day
    assert first_day_before(warehouse_dsn, date(2026, 1, 6), signups=False) == date(2026, 1, 5)
    assert known_entities(warehouse_dsn) == (3, 4)  # u3 only ordered; i3 only sold, i4 only viewed
    assert raw_entities_with_rows(warehouse_dsn) == {"users", "items", "orders", "order_items", "events"}
    counts = table_counts(warehouse_dsn, ("raw.orders", "raw.preferences", "marts.user_features"))
    assert counts == {"raw.orders": 2, "raw.preferences": 0, "marts.user_features": None}


def test_snapshots_and_the_top_customer(warehouse_dsn: str) -> None:
    from ltvfeed.warehouse.ltv_reads import top_predicted_user
    from ltvfeed.warehouse.snapshots import (
        CATALOGUE_MART,
        USER_MART,
        MissingSnapshot,
        latest_snapshot,
        missing_snapshots,
        snapshot_dates,
    )

    d1, d2, d3 = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
    assert snapshot_dates(warehouse_dsn) == [] and missing_snapshots(warehouse_dsn, [d1], (USER_MART,)) == [d1]
    with pytest.raises(MissingSnapshot, match=r"no marts\.user_features snapshot on or before 2026-01-01"):
        latest_snapshot(warehouse_dsn, on_or_before=d1)
    with connect(warehouse_dsn) as conn:
        conn.execute("create table marts.user_features (user_id text, as_of date)")
        conn.execute("create table marts.item_performance (item_id text, as_of date)")
        conn.execute("insert into marts.user_features values ('u1', %s), ('u1', %s)", (d1, d2))
        conn.execute("insert into marts.item_performance values ('i1', %s)", (d1,))
        rows = [("u1", d1, "1", 50.0), ("u2", d2, "1", 9.0), ("u3", d2, "1", 8.0), ("u4", d2, "2", 99.0)]
        conn.cursor().executemany(
            "insert into marts.user_ltv_predictions (user_id, as_of, horizon_days, model_name, model_version,"
            " prob_return, expected_ltv, p10, p50, p90, feature_timestamp)"
            " values (%s, %s, 30, 'ltv', %s, 0.5, %s, 0, 0, 0, %s::date)",
            [(u, d, v, x, d) for u, d, v, x in rows],
        )
    assert snapshot_dates(warehouse_dsn) == [d1, d2] and latest_snapshot(warehouse_dsn) == d2
    assert latest_snapshot(warehouse_dsn, on_or_before=d2 - (d2 - d1) / 2) == d1
    assert latest_snapshot(warehouse_dsn, CATALOGUE_MART) == d1
    assert missing_snapshots(warehouse_dsn, [d1, d2, d3], (USER_MART, CATALOGUE_MART)) == [d2, d3]
    # version 1's newest scoring (d2), not its older one (u1: 50) nor version 2's (u4: 99)
    assert top_predicted_user(warehouse_dsn, "ltv", "1") == "u2"
    assert top_predicted_user(warehouse_dsn, "ltv", "3") is None

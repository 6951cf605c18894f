"""The point-in-time rule in the marts, on a real warehouse: rows at exactly the cutoff are after it in every
mart. The promotion and backfill rules are in tests/unit/test_decisions.py."""

from __future__ import annotations

import pytest

# ------------------------------------------------------------------ the cutoff boundary in every dbt mart

T = "2024-03-01"  # the cutoff: as_of 00:00 UTC; rows at exactly that instant are after it
BEFORE = "2024-02-29 23:59:59.999999+00"  # the last representable instant before it
AT = "2024-03-01 00:00:00+00"
NEXT = "2024-03-02 00:00:00+00"  # the end of a one-day label window: outside it


def _load_boundary_shop(conn) -> None:
    """Every row a `< cutoff` filter decides on, once just before the cutoff (``*_in``) and once exactly at it
    (``*_out``); amounts and items differ so each mart shows which of the two it used."""
    rows = {
        "users": [("u_in", BEFORE), ("u_out", AT)],
        "items": [("i_in", "alpha", 10, BEFORE), ("i_at", "beta", 20, BEFORE), ("i_out", "gamma", 30, AT)],
        "orders": [
            ("o_in", "u_in", BEFORE, 10), ("o_at", "u_in", AT, 1000), ("o_next", "u_in", NEXT, 5000),
        ],
        "order_items": [("o_in", "i_in", 1, 10), ("o_at", "i_at", 1, 1000), ("o_next", "i_at", 1, 5000)],
        "events": [("e_in", "view", BEFORE, "u_in", "i_in"), ("e_out", "view", AT, "u_in", "i_at")],
        "preferences": [("u_in", "wishlist", "i_in", BEFORE), ("u_in", "wishlist", "i_at", AT)],
    }  # fmt: skip
    conn.cursor().executemany("insert into raw.users (user_id, signup_at) values (%s, %s)", rows["users"])
    conn.cursor().executemany(
        "insert into raw.items (item_id, category, price, created_at) values (%s, %s, %s, %s)", rows["items"]
    )
    # a price change loaded exactly at the cutoff: the cutoff keeps the price in force before it
    conn.cursor().executemany(
        "insert into raw.item_versions (item_id, category, price, in_stock, is_repeat_purchase, recommendable,"
        " created_at, valid_from) values ('i_in', 'alpha', %s, true, false, true, %s, %s)",
        [(10, BEFORE, BEFORE), (99, BEFORE, AT)],
    )
    conn.cursor().executemany(
        "insert into raw.orders (order_id, user_id, ordered_at, amount) values (%s, %s, %s, %s)", rows["orders"]
    )
    conn.cursor().executemany(
        "insert into raw.order_items (order_id, item_id, quantity, unit_price) values (%s, %s, %s, %s)",
        rows["order_items"],
    )
    conn.cursor().executemany(
        "insert into raw.events (event_id, event_type, occurred_at, user_id, item_id) values (%s, %s, %s, %s, %s)",
        rows["events"],
    )
    conn.cursor().executemany(
        "insert into raw.preferences (user_id, kind, item_id, created_at) values (%s, %s, %s, %s)",
        rows["preferences"],
    )


@pytest.mark.integration
def test_rows_at_exactly_the_cutoff_are_after_it_in_every_mart(stack, run_id: str, tmp_path) -> None:
    import uuid

    import psycopg
    from psycopg.rows import dict_row

    from ltvfeed.db import drop_database
    from ltvfeed.dbt_runner import run_dbt
    from ltvfeed.warehouse import ensure_warehouse

    name = f"ltvfeed_test_{run_id}_edge_{uuid.uuid4().hex[:6]}"
    dsn = ensure_warehouse(stack.pg_dsn, name)
    try:
        with psycopg.connect(dsn) as conn:
            _load_boundary_shop(conn)
        # the session in a far-off time zone: a day computed in the session's zone instead of UTC would show
        env = {**stack.env(), "LTVFEED_DBT_DBNAME": name, "PGOPTIONS": "-c timezone=Pacific/Kiritimati"}
        run_dbt(env, ["run", "--vars", f'{{"as_of": "{T}", "horizon_days": 1}}'], target_path=tmp_path / "target")

        def rows(query: str) -> list[dict]:
            with psycopg.connect(dsn, row_factory=dict_row) as conn:
                return conn.execute(query, (T,)).fetchall()

        features = {r["user_id"]: r for r in rows("select * from marts.user_features where as_of = %s")}
        assert set(features) == {"u_in"}  # first seen exactly at the cutoff: not a customer yet
        u = features["u_in"]
        assert (u["frequency"], u["monetary_total"]) == (1, 10.0)  # the order at the cutoff is not a feature
        assert (u["views_7d"], u["wishlist_count"]) == (1, 1)  # nor the view or the wishlist entry at it

        recent = rows("select * from marts.user_recent_purchases where as_of = %s")
        assert [(r["user_id"], list(r["recent_purchase_item_ids"])) for r in recent] == [("u_in", ["i_in"])]

        leaning = rows("select category from marts.user_category_propensity where as_of = %s and user_id = 'u_in'")
        assert {r["category"] for r in leaning} == {"alpha"}  # i_at's beta only at the cutoff (view, order, wish)

        items = {r["item_id"]: r for r in rows("select * from marts.item_performance where as_of = %s")}
        assert set(items) == {"i_in", "i_at"}  # created exactly at the cutoff: not in the catalogue yet
        assert float(items["i_in"]["price"]) == 10.0  # the price change loaded at the cutoff comes later
        assert (items["i_in"]["views_30d"], items["i_in"]["conversions_30d"]) == (1, 1)
        assert (items["i_at"]["views_30d"], items["i_at"]["conversions_30d"]) == (0, 0)

        labels = rows("select * from marts.ltv_labels where cutoff = %s and horizon_days = 1")
        assert [(r["user_id"], float(r["revenue"])) for r in labels] == [("u_in", 1000.0)]  # [cutoff, cutoff + 1)

        # the Python reads at the same boundary: feed generation's inputs and the propensity windows
        from datetime import date, timedelta

        from ltvfeed.warehouse.generation_reads import WarehouseInputs
        from ltvfeed.warehouse.propensity_reads import purchase_counts, purchases

        as_of = date.fromisoformat(T)
        with WarehouseInputs(dsn, as_of, non_merchandise=()) as warehouse:
            catalogue = warehouse.catalogue_frame().set_index("item_id")
            chunk = warehouse.user_chunk(["u_in"])
        assert catalogue.loc["i_in", "popularity"] == 1 and catalogue.loc["i_at", "popularity"] == 0
        assert chunk.purchases["item_id"].tolist() == ["i_in"] and chunk.views["item_id"].tolist() == ["i_in"]
        assert purchase_counts(dsn, as_of - timedelta(days=30), as_of)["item_id"].tolist() == ["i_in"]
        window = purchases(dsn, as_of, as_of + timedelta(days=1))  # labels: [cutoff, cutoff + 1 day)
        assert sorted(window["item_id"].astype(str)) == ["i_at"]
    finally:
        drop_database(stack.pg_dsn, name)

"""The dbt project against a real warehouse with a tiny hand-written shop: the marts hold hand-computed values,
obey the point-in-time rule, accumulate snapshots, cope with a transaction-log-only shop, and their tests can
fail. The checks that need no warehouse are in tests/unit/test_dbt.py.

dbt runs are slow on the shared machine (several seconds each), so one module-scoped scenario builds the shop
a few times and the tests below inspect what each step produced.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from ltvfeed.dbt_runner import run_dbt
from ltvfeed.errors import UserError
from tests.unit.test_dbt import T1

T2 = date(2024, 3, 5)  # second cutoff
HALF_LIFE = 14


def ts(text: str) -> datetime:
    """A UTC instant from 'YYYY-MM-DD HH:MM:SS'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------- the warehouse


def _insert(conn: psycopg.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        cols = ", ".join(row)
        marks = ", ".join(f"%({c})s" for c in row)
        conn.execute(f"insert into raw.{table} ({cols}) values ({marks})", row)


def _event(eid: str, etype: str, at: str, user: str | None, item: str | None = None, **extra: Any) -> dict[str, Any]:
    occurred = ts(at)
    return {
        "event_id": eid,
        "event_type": etype,
        "occurred_at": occurred,
        "user_id": user,
        "item_id": item,
        "received_at": extra.pop("received_at", occurred + timedelta(hours=1)),
        **extra,
    }


def _order(oid: str, user: str, at: str, amount: str, partner: str | None = None) -> dict[str, Any]:
    ordered = ts(at)
    return {
        "order_id": oid,
        "user_id": user,
        "ordered_at": ordered,
        "amount": Decimal(amount),
        "referral_partner_id": partner,
        "_loaded_at": ordered + timedelta(hours=1),
    }


def _line(oid: str, item: str, qty: int, price: str, at: str) -> dict[str, Any]:
    return {
        "order_id": oid,
        "item_id": item,
        "quantity": qty,
        "unit_price": Decimal(price),
        "_loaded_at": ts(at) + timedelta(hours=1),
    }


def load_shop(conn: psycopg.Connection) -> None:
    """The hand-written shop. Cutoff T1 = 2024-03-01: rows at exactly 2024-03-01 00:00 UTC are after it."""
    _insert(
        conn,
        "items",
        [
            {"item_id": "i_shoe", "category": "Shoes ", "price": Decimal("50.00")},
            {"item_id": "i_book", "category": "books", "price": Decimal("10.00")},
            {"item_id": "i_tea", "category": "food", "price": Decimal("5.00"), "is_repeat_purchase": True},
            {
                "item_id": "i_new",
                "category": "books",
                "price": Decimal("20.00"),
                "created_at": ts("2024-03-03 00:00:00"),
            },
        ],
    )
    _insert(
        conn,
        "users",
        [
            {"user_id": "u1", "signup_at": ts("2024-01-01 00:00:00"), "country": "de", "birth_year": 1990,
             "gender": "F", "acquisition_partner_id": "p1"},
            {"user_id": "u2", "signup_at": ts("2024-02-10 08:00:00"), "country": "FR"},
            {"user_id": "u3", "signup_at": ts("2024-03-01 00:00:00"), "country": "NL"},  # exactly at T1: not yet
        ],
    )  # fmt: skip
    _insert(
        conn,
        "orders",
        [
            _order("o1", "u1", "2024-02-01 10:00:00", "100.00"),
            _order("o2", "u1", "2024-02-20 12:00:00", "50.00", partner="p1"),
            _order("o3", "u1", "2024-02-29 23:59:59", "10.00"),  # last second before T1
            _order("o4", "g1", "2024-02-15 09:00:00", "30.00"),  # guest: no users row
            _order("o5", "u2", "2024-03-01 00:00:00", "40.00"),  # at T1: label, not feature
        ],
    )
    _insert(
        conn,
        "order_items",
        [
            _line("o1", "i_shoe", 2, "50.00", "2024-02-01 10:00:00"),
            _line("o2", "i_book", 5, "10.00", "2024-02-20 12:00:00"),
            _line("o3", "i_tea", 2, "5.00", "2024-02-29 23:59:59"),
            _line("o4", "i_book", 3, "10.00", "2024-02-15 09:00:00"),
            _line("o5", "i_tea", 8, "5.00", "2024-03-01 00:00:00"),
        ],
    )
    _insert(
        conn,
        "events",
        [
            _event("e1", "view", "2024-02-29 10:00:00", "u1", "i_shoe", dwell_seconds=30),
            _event("e2", "view", "2024-02-25 10:00:00", "u1", "i_book", dwell_seconds=20),
            _event("e3", "click", "2024-02-25 10:01:00", "u1", "i_book", partner_id="p1"),
            _event("e4", "add_to_cart", "2024-02-25 10:02:00", "u1", "i_book"),
            _event("e5", "referral_purchase", "2024-02-20 12:00:00", "u1", "i_book", order_id="o2",
                   amount=Decimal("50.00"), partner_id="p1"),
            _event("e6", "view", "2024-01-15 10:00:00", "u1", "i_tea", dwell_seconds=10),
            _event("e7", "search", "2024-02-28 10:00:00", "u1", search_query="tea"),
            _event("e8", "search", "2023-11-01 10:00:00", "u1", search_query="old"),  # outside 90 days
            _event("e9", "view", "2024-03-01 00:00:00", "u1", "i_shoe", dwell_seconds=99),  # at T1: excluded
            _event("e10", "view", "2024-02-29 23:59:59", "u2", "i_tea", dwell_seconds=5),
            _event("e11", "click", "2024-02-29 23:00:00", "u2", "i_tea"),
            _event("e12", "view", "2024-02-27 10:00:00", None, "i_shoe"),  # anonymous
        ],
    )  # fmt: skip
    _insert(
        conn,
        "preferences",
        [
            {"user_id": "u1", "kind": "wishlist", "item_id": "i_tea", "created_at": ts("2024-02-01 00:00:00")},
            {"user_id": "u1", "kind": "profile_category", "category": "books", "created_at": ts("2024-01-02 00:00:00")},
            {"user_id": "u2", "kind": "saved", "item_id": "i_shoe", "created_at": ts("2024-03-02 00:00:00")},
        ],
    )  # fmt: skip


def load_later_data(conn: psycopg.Connection) -> None:
    """Rows on or after T1 (before T2): must not change the T1 snapshot."""
    _insert(
        conn,
        "events",
        [
            _event("e20", "view", "2024-03-01 05:00:00", "u1", "i_book", dwell_seconds=7),
            _event("e21", "add_to_cart", "2024-03-02 05:00:00", "u2", "i_shoe"),
            _event("e22", "click", "2024-03-04 23:59:59", "u3", "i_new"),
        ],
    )
    _insert(
        conn,
        "orders",
        [_order("o6", "u1", "2024-03-03 10:00:00", "20.00"), _order("o7", "g2", "2024-03-02 10:00:00", "5.00")],
    )
    _insert(
        conn,
        "order_items",
        [
            _line("o6", "i_new", 1, "20.00", "2024-03-03 10:00:00"),
            _line("o7", "i_tea", 1, "5.00", "2024-03-02 10:00:00"),
        ],
    )
    _insert(
        conn,
        "preferences",
        [{"user_id": "u1", "kind": "saved", "item_id": "i_book", "created_at": ts("2024-03-01 00:00:00")}],
    )


def load_late_arrival(conn: psycopg.Connection) -> None:
    """An old event (2024-02-10) arriving only now: far outside the day look-back, so the incremental
    models must find it through its arrival time."""
    _insert(
        conn,
        "events",
        [_event("e30", "view", "2024-02-10 10:00:00", "u2", "i_book", received_at=ts("2024-03-05 12:00:00"))],
    )


def fetch(dsn: str, query: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def snapshot(dsn: str, table: str, as_of: date) -> list[tuple]:
    """A mart's rows for one as_of, floats rounded (aggregation order may differ between runs)."""
    rows = fetch(dsn, f"select * from marts.{table} where as_of = %s order by 1, 2, 3", as_of)
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in r.values()) for r in rows]


@dataclass
class Shop:
    dsn: str
    env: dict[str, str]
    target: Path
    timings: dict[str, float] = field(default_factory=dict)
    first_t1: dict[str, list[tuple]] = field(default_factory=dict)
    rebuilt_t1: dict[str, list[tuple]] = field(default_factory=dict)
    after_t2: dict[str, list[tuple]] = field(default_factory=dict)
    labels_h1: list[dict[str, Any]] = field(default_factory=list)

    def dbt(self, step: str, args: list[str]) -> None:
        start = time.perf_counter()
        run_dbt(self.env, args, target_path=self.target)
        self.timings[step] = round(time.perf_counter() - start, 1)


SNAPSHOT_MARTS = ("user_features", "user_category_propensity", "item_performance", "user_recent_purchases")


@contextmanager
def warehouse_for_dbt(stack, run_id: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A fresh warehouse database and the dbt environment pointing at it. dbt's session runs in a far-off
    time zone (UTC+14) so any day computed in the session zone instead of UTC would show."""
    from ltvfeed.db import drop_database
    from ltvfeed.warehouse import ensure_warehouse

    name = f"ltvfeed_test_{run_id}_dbt_{uuid.uuid4().hex[:6]}"
    dsn = ensure_warehouse(stack.pg_dsn, name)
    env = {**stack.env(), "LTVFEED_DBT_DBNAME": name, "PGOPTIONS": "-c timezone=Pacific/Kiritimati"}
    try:
        yield dsn, env
    finally:
        drop_database(stack.pg_dsn, name)


@pytest.fixture(scope="module")
def shop(stack, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """Build T1, add later data, rebuild T1, add a late arrival, build T2: recording the marts after each."""
    with warehouse_for_dbt(stack, run_id) as (dsn, env):
        s = Shop(dsn, env, tmp_path_factory.mktemp("dbt_target"))
        with psycopg.connect(dsn) as conn:
            load_shop(conn)
        s.dbt("build T1", ["build", "--vars", f'{{"as_of": "{T1}", "horizon_days": 1}}'])
        s.first_t1 = {m: snapshot(dsn, m, T1) for m in SNAPSHOT_MARTS}
        s.labels_h1 = fetch(dsn, "select * from marts.ltv_labels where horizon_days = 1 order by user_id")
        with psycopg.connect(dsn) as conn:
            load_later_data(conn)
        s.dbt("rebuild T1 after later data", ["build", "--vars", f'{{"as_of": "{T1}"}}'])
        s.rebuilt_t1 = {m: snapshot(dsn, m, T1) for m in SNAPSHOT_MARTS}
        with psycopg.connect(dsn) as conn:
            load_late_arrival(conn)
        s.dbt("build T2 (incremental, late arrival)", ["build", "--vars", f'{{"as_of": "{T2}"}}'])
        s.after_t2 = {m: snapshot(dsn, m, T1) for m in SNAPSHOT_MARTS}
        yield s
        print("\ndbt timings (s):", s.timings)


def _features(shop: Shop, as_of: date) -> dict[str, dict[str, Any]]:
    rows = fetch(shop.dsn, "select * from marts.user_features where as_of = %s", as_of)
    return {r["user_id"]: r for r in rows}


@pytest.mark.integration
def test_user_features_by_hand(shop: Shop) -> None:
    f = _features(shop, T1)
    assert set(f) == {"u1", "u2", "g1"}  # u3 signs up exactly at T1; g1 is known from orders only
    u1 = f["u1"]
    assert u1["feature_timestamp"] == ts("2024-03-01 00:00:00")
    assert (u1["frequency"], u1["monetary_total"], u1["monetary_avg"]) == (3, 160.0, pytest.approx(160 / 3))
    assert u1["last_order_at"] == ts("2024-02-29 23:59:59")
    assert (u1["recency_days"], u1["tenure_days"]) == (1, 60)  # 2024-01-01 .. 2024-03-01 (leap year)
    assert (u1["orders_30d"], u1["revenue_30d"], u1["referral_orders"]) == (3, 160.0, 1)
    # 7 days = 2024-02-23 .. 02-29: e1, e2 views (e9 at 03-01 00:00 is excluded), e3 click, e4 add-to-cart
    assert (u1["views_7d"], u1["clicks_7d"], u1["add_to_cart_7d"], u1["referral_purchases_7d"]) == (2, 1, 1, 0)
    assert (u1["dwell_seconds_7d"], u1["dwell_seconds_90d"]) == (50.0, 60.0)
    assert (u1["views_30d"], u1["views_90d"], u1["referral_purchases_30d"]) == (2, 3, 1)
    assert (u1["add_to_cart_per_view_7d"], u1["purchase_per_click_30d"], u1["purchase_per_click_7d"]) == (0.5, 1.0, 0.0)
    assert (u1["searches_30d"], u1["searches_90d"]) == (1, 1)  # e8 is 121 days old
    assert u1["last_event_at"] == ts("2024-02-29 10:00:00")
    assert (u1["country"], u1["age"], u1["gender"], u1["acquisition_partner_id"]) == ("DE", 34, "f", "p1")
    assert (u1["wishlist_count"], u1["saved_count"], u1["profile_category_count"]) == (1, 0, 1)
    # books: view 1 + 2*click 1 + 3*add_to_cart 1 + 5*5 bought + 5 profile = 36 > food 14 > shoes 11
    assert u1["favourite_category"] == "books"

    u2 = f["u2"]  # registered, no order before T1 (o5 is at T1), two events in the last second/hour
    assert (u2["frequency"], u2["monetary_total"], u2["last_order_at"]) == (0, 0.0, None)
    assert (u2["tenure_days"], u2["recency_days"]) == (20, 20)
    assert (u2["views_7d"], u2["clicks_7d"], u2["dwell_seconds_7d"]) == (1, 1, 5.0)
    assert (u2["age"], u2["gender"], u2["acquisition_partner_id"], u2["saved_count"]) == (None, "unknown", "direct", 0)
    assert u2["favourite_category"] == "food"

    g1 = f["g1"]  # transaction-log customer: complete row, zero engagement
    assert (g1["is_registered"], g1["country"], g1["acquisition_partner_id"]) == (False, "unknown", "unknown")
    assert (g1["frequency"], g1["monetary_total"], g1["tenure_days"], g1["recency_days"]) == (1, 30.0, 15, 15)
    assert (g1["views_90d"], g1["clicks_7d"], g1["add_to_cart_per_view_30d"]) == (0, 0, 0.0)
    assert g1["favourite_category"] == "books"


@pytest.mark.integration
def test_propensity_by_hand(shop: Shop) -> None:
    rows = fetch(shop.dsn, "select * from marts.user_category_propensity where as_of = %s and user_id = 'u1'", T1)
    got = {r["category"]: r for r in rows}
    assert set(got) == {"books", "food", "shoes"}  # 'Shoes ' cleaned
    assert (got["books"]["score"], got["food"]["score"], got["shoes"]["score"]) == (36.0, 14.0, 11.0)
    assert got["books"]["propensity"] == pytest.approx(36 / 61)
    assert (got["food"]["purchases_365d"], got["food"]["saved_items"], got["books"]["is_profile_category"]) == (
        2,
        1,
        True,
    )


@pytest.mark.integration
def test_item_performance_by_hand(shop: Shop) -> None:
    rows = fetch(shop.dsn, "select * from marts.item_performance where as_of = %s", T1)
    items = {r["item_id"]: r for r in rows}
    assert set(items) == {"i_shoe", "i_book", "i_tea"}  # i_new is created after T1
    book, shoe, tea = items["i_book"], items["i_shoe"], items["i_tea"]
    assert (shoe["views_30d"], shoe["conversions_30d"], shoe["revenue_30d"]) == (2, 1, 100.0)  # anon view counts
    assert (book["views_30d"], book["clicks_30d"], book["add_to_cart_rate_30d"]) == (1, 1, 1.0)
    assert (book["conversions_30d"], book["units_sold_30d"], book["revenue_30d"]) == (2, 8, 80.0)

    def w(days: int) -> float:
        return 0.5 ** (days / HALF_LIFE)

    assert book["revenue_decayed"] == pytest.approx(50 * w(10) + 30 * w(15))
    assert shoe["views_decayed"] == pytest.approx(w(1) + w(3))
    assert tea["views_decayed"] == pytest.approx(w(1) + w(46))
    # ranks: revenue book > shoe > tea; conversions book > tea > shoe; add-to-cart only book;
    # views+clicks tea > shoe > book -> scores 0.5+0.3+0.1+0.1/3, 0.5*2/3+0.3/3+0.1*2/3, 0.5/3+0.3*2/3+0.1
    assert book["commercial_score"] == pytest.approx(0.9 + 0.1 / 3)
    assert shoe["commercial_score"] == pytest.approx(0.5)
    assert tea["commercial_score"] == pytest.approx(0.5 / 3 + 0.2 + 0.1)
    assert (tea["is_repeat_purchase"], shoe["category"], shoe["in_stock"]) == (True, "shoes", True)


def _recent(shop: Shop, as_of: date) -> dict[str, tuple[list[str], list[datetime], list[bool]]]:
    rows = fetch(shop.dsn, "select * from marts.user_recent_purchases where as_of = %s", as_of)
    return {
        r["user_id"]: (
            r["recent_purchase_item_ids"],
            [datetime.fromtimestamp(t, UTC) for t in r["recent_purchase_times"]],
            r["recent_purchase_repeatable"],
        )
        for r in rows
    }


@pytest.mark.integration
def test_recent_purchases_by_hand(shop: Shop) -> None:
    t1 = _recent(shop, T1)  # window: the 30 days 2024-01-31 .. 02-29
    assert set(t1) == {"u1", "u2", "g1"}  # every customer, with or without purchases
    assert t1["u1"] == (
        ["i_tea", "i_book", "i_shoe"],  # newest first
        [ts("2024-02-29 23:59:59"), ts("2024-02-20 12:00:00"), ts("2024-02-01 10:00:00")],
        [True, False, False],  # i_tea is a repeat-purchase item
    )
    assert t1["g1"][0] == ["i_book"] and t1["u2"] == ([], [], [])  # u2's first order is at T1: not yet
    t2 = _recent(shop, T2)  # window 2024-02-04 .. 03-04: o1 (02-01) has aged out
    assert t2["u1"][0] == ["i_new", "i_tea", "i_book"] and t2["u1"][1][0] == ts("2024-03-03 10:00:00")
    assert (t2["u2"][0], t2["g2"][0], t2["u3"]) == (["i_tea"], ["i_tea"], ([], [], []))


@pytest.mark.integration
def test_ltv_labels(shop: Shop) -> None:
    h1 = {r["user_id"]: r for r in shop.labels_h1}
    # data ends 2024-03-01 (o5, e9) -> data_end_date 03-02; window [03-01, 03-02) fully observed
    assert set(h1) == {"u1", "u2", "g1"}
    assert (h1["u2"]["revenue"], h1["u2"]["orders"], h1["u2"]["is_complete"]) == (Decimal("40.00"), 1, True)
    assert (h1["u1"]["revenue"], h1["u1"]["orders"]) == (Decimal("0.00"), 0)
    labels = fetch(shop.dsn, "select * from marts.ltv_labels where horizon_days = 365")
    by_key = {(r["user_id"], r["cutoff"]): r for r in labels}
    # one label per user_features row (T1: 3 users, T2: + u3, g2), none complete within a year
    assert len(by_key) == 3 + 5
    assert by_key[("u1", T1)]["revenue"] == Decimal("20.00")  # o6 on 03-03 is in u1's future
    assert by_key[("u1", T2)]["revenue"] == Decimal("0.00")
    assert not any(r["is_complete"] for r in labels)
    # the horizon-1 labels of the first build are still there (delete+insert on horizon_days)
    assert len(fetch(shop.dsn, "select 1 from marts.ltv_labels where horizon_days = 1")) == 3


@pytest.mark.integration
def test_point_in_time_later_data_leaves_snapshot_unchanged(shop: Shop) -> None:
    for mart in SNAPSHOT_MARTS:
        assert shop.first_t1[mart], mart
        assert shop.rebuilt_t1[mart] == shop.first_t1[mart], mart


@pytest.mark.integration
def test_second_as_of_adds_rows_without_touching_first(shop: Shop) -> None:
    for mart in SNAPSHOT_MARTS:
        assert shop.after_t2[mart] == shop.first_t1[mart], mart
    f2 = _features(shop, T2)
    assert set(f2) == {"u1", "u2", "u3", "g1", "g2"}
    assert (f2["u1"]["frequency"], f2["u1"]["recency_days"], f2["u1"]["saved_count"]) == (4, 2, 1)
    assert (f2["g2"]["frequency"], f2["g2"]["tenure_days"]) == (1, 3)
    assert (f2["u3"]["clicks_7d"], f2["u3"]["tenure_days"]) == (1, 4)
    # the late-arriving view (2024-02-10, loaded after T1's builds) reached the incremental models
    assert f2["u2"]["views_30d"] == 1 + 1
    as_ofs = fetch(shop.dsn, "select distinct as_of from marts.item_performance order by 1")
    assert [r["as_of"] for r in as_ofs] == [T1, T2]


@pytest.mark.integration
def test_planted_violations_fail_the_dbt_tests(shop: Shop) -> None:
    """Damages the marts on purpose, then puts them back (tests run in random order)."""
    undo = []
    with psycopg.connect(shop.dsn) as conn:
        last_order_at = conn.execute(
            "select last_order_at from marts.user_features where as_of = %s and user_id = 'u1'", (T1,)
        ).fetchone()[0]
        recent = conn.execute(
            "select recent_purchase_times[1] from marts.user_recent_purchases where as_of = %s and user_id = 'u1'",
            (T2,),
        ).fetchone()[0]
        conn.execute(
            "update marts.user_features set last_order_at = feature_timestamp + interval '1 hour' "
            "where as_of = %s and user_id = 'u1'",
            (T1,),
        )
        undo.append(
            (
                "update marts.user_features set last_order_at = %s where as_of = %s and user_id = 'u1'",
                (last_order_at, T1),
            )
        )
        conn.execute("update marts.item_performance set views_30d = views_30d + 1 where as_of = %s", (T2,))
        undo.append(("update marts.item_performance set views_30d = views_30d - 1 where as_of = %s", (T2,)))
        conn.execute(  # an order of u1's on T2 itself: after the cutoff
            "update marts.user_recent_purchases set recent_purchase_times[1] = %s where as_of = %s and user_id = 'u1'",
            (int(ts("2024-03-05 08:00:00").timestamp()), T2),
        )
        undo.append(
            (
                "update marts.user_recent_purchases set recent_purchase_times[1] = %s "
                "where as_of = %s and user_id = 'u1'",
                (recent, T2),
            )
        )
    try:
        with pytest.raises(UserError) as failure:
            shop.dbt(
                "test after planting violations",
                ["test", "--select", "user_features", "item_performance", "user_recent_purchases",
                 "--vars", f'{{"as_of": "{T2}"}}'],
            )  # fmt: skip
    finally:
        with psycopg.connect(shop.dsn) as conn:
            for statement, params in undo:
                conn.execute(statement, params)
    message = str(failure.value)
    assert "before_as_of_user_features_last_order_at" in message
    assert "assert_item_performance_match_raw" in message
    assert "assert_user_recent_purchases_match_raw" in message
    assert "Got 1 result" in message
    shop.dbt(  # put back: the same tests pass again
        "test after repair",
        ["test", "--select", "user_features", "item_performance", "user_recent_purchases",
         "--vars", f'{{"as_of": "{T2}"}}'],
    )  # fmt: skip


@pytest.mark.integration
def test_transaction_log_only_shop(stack, run_id: str, tmp_path: Path) -> None:
    """Orders only: no users, items, events or preferences. Default as_of = day after the last order."""
    with warehouse_for_dbt(stack, run_id) as (dsn, env):
        with psycopg.connect(dsn) as conn:
            _insert(
                conn,
                "orders",
                [
                    _order("t1", "c1", "2024-05-01 10:00:00", "12.50"),
                    _order("t2", "c1", "2024-05-20 10:00:00", "7.50"),
                    _order("t3", "c2", "2024-05-31 23:00:00", "99.00"),
                ],
            )
        run_dbt(env, ["build"], target_path=tmp_path)
        rows = {r["user_id"]: r for r in fetch(dsn, "select * from marts.user_features")}
        assert set(rows) == {"c1", "c2"}
        c1 = rows["c1"]
        assert c1["as_of"] == date(2024, 6, 1)
        assert (c1["frequency"], c1["monetary_total"], c1["recency_days"], c1["tenure_days"]) == (2, 20.0, 12, 31)
        assert (c1["views_90d"], c1["clicks_30d"], c1["searches_90d"], c1["wishlist_count"]) == (0, 0, 0, 0)
        assert (c1["is_registered"], c1["country"], c1["favourite_category"]) == (False, "unknown", "unknown")
        assert rows["c2"]["recency_days"] == 1
        labels = fetch(dsn, "select * from marts.ltv_labels")
        assert {(r["user_id"], r["revenue"], r["is_complete"]) for r in labels} == {
            ("c1", Decimal("0.00"), False),
            ("c2", Decimal("0.00"), False),
        }

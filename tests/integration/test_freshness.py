"""Request-time freshness against real PostgreSQL and Redis: the feed API drops items bought since the served
generation's cutoff. A small shop goes through dbt (marts.user_recent_purchases for cutoff T = today),
``feast apply`` and materialisation; feed generations are published to Redis; then

- the materialised snapshot drops an item bought after an older generation's cutoff, not one bought before;
- the row read with the feed equals Feast's read; the push computed from raw agrees with the mart;
- a new order imported with ``ltvfeed import-dir`` is pushed through the real Feast store, and the API (built
  as ``ltvfeed serve`` builds it) stops serving that item at once: the next item moves up; collector events
  reach the online store within seconds;
- without the Feast service applied, the API starts and says ``"freshness": "off"``.

The rule and its wiring without a database are in tests/unit/test_freshness.py.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ltvfeed.features.recent_purchases import (
    FEATURES,
    ITEM_IDS,
    REPEATABLE,
    TIMES,
    VIEW,
    FeatureStoreNotApplied,
    push_recent_purchases,
    recent_purchase_frame,
)
from ltvfeed.serving.api import ApiOptions, create_app, create_app_for_stack
from ltvfeed.serving.config import FeedConfig
from ltvfeed.serving.feed import Feed
from ltvfeed.serving.freshness import FeastFreshnessFilter
from tests.unit.test_freshness import at, feed_items

T = datetime.now(UTC).date()  # the snapshot's cutoff: pushes are stamped with the wall clock, so "today"
OPTIONS = ApiOptions(freshness_timeout_s=2.0)  # generous: the shared test machine is slow, the rule is tested here


# --------------------------------------------------------------------------------------------- the warehouse

ITEMS = [f"i{k:02d}" for k in range(12)] + ["i_tea"]


def _insert(conn: psycopg.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        cols = ", ".join(row)
        conn.execute(f"insert into raw.{table} ({cols}) values ({', '.join(f'%({c})s' for c in row)})", row)


def load_shop(conn: psycopg.Connection) -> None:
    """u1 bought i01 two days before T, i02 the day before, i03 40 days before (outside the window); u2 nothing;
    u3 (the user the import test changes, so that no other test depends on its row) i01 three days before T."""
    users = ("u1", "u2", "u3")
    _insert(conn, "users", [{"user_id": u, "signup_at": at(T - timedelta(days=100))} for u in users])
    _insert(
        conn,
        "items",
        [{"item_id": i, "category": "misc", "price": "10.00", "is_repeat_purchase": i == "i_tea"} for i in ITEMS],
    )
    orders = [("o1", "u1", "i01", at(T - timedelta(days=2), 9)), ("o2", "u1", "i02", at(T - timedelta(days=1), 10))]
    orders.append(("o3", "u1", "i03", at(T - timedelta(days=40), 12)))
    orders.append(("o4", "u3", "i01", at(T - timedelta(days=3), 8)))
    _insert(
        conn, "orders", [{"order_id": o, "user_id": u, "ordered_at": t, "amount": "10.00"} for o, u, _, t in orders]
    )
    _insert(
        conn,
        "order_items",
        [{"order_id": o, "item_id": i, "quantity": 1, "unit_price": "10.00"} for o, _, i, _ in orders],
    )


@pytest.fixture(scope="module")
def shop(stack, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """This module's stack: its own warehouse (dbt snapshot T, Feast applied and materialised) and Redis prefix
    (feed generations and the Feast project)."""
    from ltvfeed.db import drop_database
    from ltvfeed.dbt_runner import run_dbt
    from ltvfeed.features import apply, clear_online, cutoff, materialize_incremental
    from ltvfeed.serving.feed_store import FeedStore
    from ltvfeed.warehouse import ensure_warehouse

    suffix = uuid.uuid4().hex[:6]
    name = f"ltvfeed_test_{run_id}_fresh_{suffix}"
    dsn = ensure_warehouse(stack.pg_dsn, name)
    settings = stack.settings.model_copy(
        update={"warehouse_db": name, "redis_prefix": f"{stack.settings.redis_prefix}fresh_{suffix}:"}
    )
    s = dataclasses.replace(stack, settings=settings)
    try:
        with psycopg.connect(dsn) as conn:
            load_shop(conn)
        marts = ["+user_features", "+item_performance", "+user_category_propensity", "+user_recent_purchases"]
        run_dbt(s.env(), ["run", "--select", *marts, "--vars", json.dumps({"as_of": T.isoformat()})],
                target_path=tmp_path_factory.mktemp("dbt_target"))  # fmt: skip
        apply(s)
        materialize_incremental(s, cutoff(T), views=[VIEW])
        yield s
    finally:
        try:
            clear_online(s)
            feeds = FeedStore(s.redis_url, settings.redis_prefix)
            keys = list(feeds.client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
            if keys:
                feeds.client.delete(*keys)
        finally:
            drop_database(stack.pg_dsn, name)


def publish(stack: Any, as_of: date, feeds: dict[str, list[str]]) -> str:
    """A committed generation for cutoff ``as_of`` with these feeds (and a classic feed of every item)."""
    from ltvfeed.serving.feed_store import FeedStore

    store = FeedStore(stack.redis_url, stack.settings.redis_prefix)
    gen = store.begin_generation(model_versions={"ltv": "test"}, config=FeedConfig(), extra={"as_of": as_of})
    store.write_shard(gen, 0, [Feed(user, feed_items(ids)) for user, ids in feeds.items()])
    store.write_classic(gen, Feed("any", feed_items(ITEMS)))
    store.commit_generation(gen, expected_shards=1)
    store.client.close()
    return gen


def get_feed(client: TestClient, user: str, n: int) -> tuple[list[str], str]:
    response = client.get(f"/v1/users/{user}/feed", params={"n": n})
    assert response.status_code == 200, response.text
    body = response.json()
    return [it["item_id"] for it in body["items"]], body["freshness"]


def online_row(stack: Any, user: str) -> dict[str, Any]:
    from ltvfeed.features import feature_store

    values = feature_store(stack).get_online_features([f"{VIEW}:{f}" for f in FEATURES], [{"user_id": user}])
    return {k: v[0] for k, v in values.to_dict().items()}


@pytest.mark.integration
def test_snapshot_drops_items_bought_after_an_older_generation(shop) -> None:
    """Yesterday's generation (cutoff T-1 00:00) could not know i02, bought on T-1 10:00; i01 (T-2) it knew."""
    publish(shop, T - timedelta(days=1), {"u1": ["i01", "i02", "i04", "i05", "i06"], "u2": ["i02", "i04"]})
    with TestClient(create_app(shop.settings, freshness=FeastFreshnessFilter.open(shop), options=OPTIONS)) as client:
        assert get_feed(client, "u1", 3) == (["i01", "i04", "i05"], "applied")
        assert get_feed(client, "u2", 2) == (["i02", "i04"], "applied")  # u2 bought nothing
        assert get_feed(client, "nobody", 2) == (["i00", "i01"], "applied")  # classic feed, no online row


@pytest.mark.integration
def test_row_read_with_the_feed_equals_feasts_read(shop) -> None:
    """The API reads the online row itself, pipelined with the feed (one round trip): the same values as Feast's
    own read, and the same answers as the filter reading through Feast."""
    import redis

    fresh = FeastFreshnessFilter.open(shop)
    assert fresh.row is not None  # what `ltvfeed serve` gets: the pipelined read
    client = redis.Redis.from_url(shop.redis_url)
    for user in ("u1", "u2", "nobody"):
        direct = fresh.row.decode(client.hmget(fresh.row.key(user), fresh.row.fields))
        via_feast = online_row(shop, user)
        assert (list(direct.item_ids), list(direct.times), list(direct.repeatable)) == tuple(
            list(via_feast[f] or []) for f in FEATURES
        ), user
    client.close()
    publish(shop, T - timedelta(days=1), {"u1": ["i01", "i02", "i04", "i05", "i06"]})
    through_feast = FeastFreshnessFilter(fresh.store, fresh.refs)  # no row: the filter reads through Feast
    for flt in (fresh, through_feast):
        with TestClient(create_app(shop.settings, freshness=flt, options=OPTIONS)) as api:
            assert get_feed(api, "u1", 3) == (["i01", "i04", "i05"], "applied")
            assert get_feed(api, "nobody", 2) == (["i00", "i01"], "applied")


@pytest.mark.integration
def test_push_lists_agree_with_the_mart(shop) -> None:
    from ltvfeed.features import cutoff

    with psycopg.connect(shop.warehouse_dsn) as conn:
        mart = conn.execute(
            "select user_id, recent_purchase_item_ids, recent_purchase_times, recent_purchase_repeatable "
            "from marts.user_recent_purchases where as_of = %s and user_id in ('u1', 'u2') order by user_id",
            (T,),
        ).fetchall()
        pushed = recent_purchase_frame(conn, ["u1", "u2"], now=cutoff(T))  # the push anchored at the cutoff
    assert [tuple(r) for r in pushed[["user_id", *FEATURES]].itertuples(index=False)] == mart
    assert mart[0][1] == ["i02", "i01"]  # newest first; i03 (40 days old) is outside the window


def write_csv(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")


@pytest.mark.integration
def test_imported_order_is_pushed_and_dropped_at_request_time(shop, tmp_path: Path, monkeypatch) -> None:
    """Today's generation (cutoff T 00:00) serves i01 (bought before the cutoff: kept). A new order of i05 and of
    the repeat-purchase i_tea is imported through the CLI, which pushes u3's whole recent list to Redis; the API
    built like ``ltvfeed serve`` builds it then drops i05 and moves the next item up, keeping i_tea."""
    from typer.testing import CliRunner

    from ltvfeed.cli import app
    from ltvfeed.settings import get_settings

    publish(shop, T, {"u3": ["i01", "i05", "i06", "i_tea", "i07", "i08"]})
    api = create_app_for_stack(shop, options=OPTIONS)
    assert "freshness filter on" in api.state.freshness_note
    with TestClient(api) as client:
        assert get_feed(client, "u3", 3) == (["i01", "i05", "i06"], "applied")

        now = datetime.now(UTC)
        write_csv(tmp_path / "orders" / "o.csv", "order_id,user_id,ordered_at,amount", [f"o10,u3,{now},15.00"])
        write_csv(
            tmp_path / "order_items" / "l.csv",
            "order_id,item_id,quantity,unit_price",
            ["o10,i05,1,10.00", "o10,i_tea,1,5.00"],
        )
        for key, value in shop.env().items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        try:
            run = CliRunner().invoke(app, ["import-dir", str(tmp_path)])
        finally:
            get_settings.cache_clear()
        assert run.exit_code == 0, run.output
        assert "recent purchases pushed online for 1 user(s)" in run.output

        assert get_feed(client, "u3", 3) == (["i01", "i06", "i_tea"], "applied")  # i05 gone, i_tea kept
        assert get_feed(client, "u3", 10)[0] == ["i01", "i06", "i_tea", "i07", "i08"]

    row = online_row(shop, "u3")  # the push carried the whole list, not only the new order
    assert row[ITEM_IDS] == ["i05", "i_tea", "i01"] and row[REPEATABLE] == [False, True, False]
    assert row[TIMES][0] == int(now.timestamp())


@pytest.mark.integration
def test_collector_events_reach_the_online_store_within_seconds(shop) -> None:
    """Events posted to the collector (built like ``ltvfeed collect``) are pushed after commit: u9's order of i00
    drops i00 from the feed the API serves (the freshness view), and the last hour's views, add-to-cart and
    wishlist are readable with ``get_online_features`` (service live_activity)."""
    from ltvfeed.collector import signing
    from ltvfeed.collector.partners import add_partner, fernet
    from ltvfeed.collector.service import create_app_for_stack as create_collector
    from ltvfeed.features import feature_store
    from ltvfeed.features import live_activity as live

    publish(shop, T, {"u1": ["i04"]})
    collector = create_collector(shop)
    secret = add_partner(shop.warehouse_dsn, fernet(shop.settings), "partner_live")
    now = datetime.now(UTC)

    def event(k: int, kind: str, minutes: float, **fields: Any) -> dict[str, Any]:
        moment = (now - timedelta(minutes=minutes)).isoformat()
        return {"event_id": f"live{k}", "type": kind, "timestamp": moment, "user_id": "u9", **fields}

    events = [
        event(1, "view", 30, item_id="i04"),
        event(2, "view", 20, item_id="i05"),
        event(3, "view", 10, item_id="i04"),
        event(4, "view", 90, item_id="i08"),  # outside the hour
        event(5, "add_to_cart", 5, item_id="i05"),
        event(6, "wishlist_add", 4, item_id="i06"),
        event(7, "order", 1, order_id="live-o1", amount="10.00",
              lines=[{"item_id": "i00", "quantity": 1, "unit_price": "10.00"}]),
    ]  # fmt: skip
    body = json.dumps(events).encode()
    with TestClient(collector) as client:
        headers = {"Content-Type": "application/json", **signing.signed_headers("partner_live", secret, body)}
        answer = client.post("/v1/events", content=body, headers=headers)
        assert answer.status_code == 200 and answer.json()["stored"] == len(events), answer.text
        store, refs = feature_store(shop), [f"{live.VIEW}:{f}" for f in live.FEATURES]
        deadline = time.monotonic() + 60  # the first push of a process loads Feast: slow under CI load
        while True:
            row = {k: v[0] for k, v in store.get_online_features(refs, [{"user_id": "u9"}]).to_dict().items()}
            if row["wishlist_item_ids"] and online_row(shop, "u9")[ITEM_IDS]:
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.2)
    assert (row["live_categories"], row["live_views"], row["live_add_to_cart"]) == (["misc"], [3], [1])
    assert row["last_viewed_item_ids"] == ["i04", "i05"] and row["wishlist_item_ids"] == ["i06"]
    assert online_row(shop, "u9")[ITEM_IDS] == ["i00"]
    with TestClient(create_app_for_stack(shop, options=OPTIONS)) as api:
        assert get_feed(api, "u9", 2) == (["i01", "i02"], "applied")  # the classic feed without i00, just bought


@pytest.mark.integration
def test_without_feast_applied_the_api_serves_unfiltered(
    stack, warehouse_dsn: str, tmp_path: Path, monkeypatch
) -> None:
    """A warehouse where `ltvfeed features apply` never ran: the API starts, says why, and flags "off"; a push
    fails clearly; an import of recent orders still loads its rows and succeeds, saying what was not pushed."""
    from typer.testing import CliRunner

    from ltvfeed.cli import app
    from ltvfeed.db import dsn_parts
    from ltvfeed.settings import get_settings

    name = dsn_parts(warehouse_dsn)["dbname"]
    prefix = f"{stack.settings.redis_prefix}nofeast_{uuid.uuid4().hex[:6]}:"
    settings = stack.settings.model_copy(update={"warehouse_db": name, "redis_prefix": prefix})
    s = dataclasses.replace(stack, settings=settings)
    publish(s, T, {"u1": ["i01", "i02"]})
    try:
        api = create_app_for_stack(s)
        assert "not registered" in api.state.freshness_note and "ltvfeed features apply" in api.state.freshness_note
        with TestClient(api) as client:
            assert get_feed(client, "u1", 2) == (["i01", "i02"], "off")
        off = dataclasses.replace(s, settings=settings.model_copy(update={"api_freshness": False}))
        assert "api_freshness" in create_app_for_stack(off).state.freshness_note

        write_csv(tmp_path / "o.csv", "order_id,user_id,ordered_at,amount", [f"o1,u1,{datetime.now(UTC)},1.00"])
        for key, value in s.env().items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        try:
            run = CliRunner().invoke(app, ["import", "orders", str(tmp_path / "o.csv")])
        finally:
            get_settings.cache_clear()
        assert run.exit_code == 0, run.output
        assert "loaded 1" in run.output and "not pushed online" in run.output and "features apply" in run.output
        with psycopg.connect(warehouse_dsn) as conn:
            assert conn.execute("select user_id from raw.orders").fetchall() == [("u1",)]
        with pytest.raises(FeatureStoreNotApplied, match="features apply"):
            push_recent_purchases(s, ["u1"])
    finally:
        from ltvfeed.serving.feed_store import FeedStore

        feeds = FeedStore(stack.redis_url, prefix)
        keys = list(feeds.client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            feeds.client.delete(*keys)

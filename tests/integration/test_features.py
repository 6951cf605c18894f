"""The Feast feature store against real PostgreSQL and Redis: a tiny shop goes through dbt for two daily
snapshots (T1, T2), the DAG's feature tasks apply the definitions and load Redis, and then

- online reads (Feast SDK, the CLI and `feast serve` over HTTP) return T2's values exactly as the marts hold
  them, each service read with its own key alone;
- training frames are point-in-time correct: a cutoff between T1 and T2 gets T1's row, at/after T2 gets T2's,
  before T1 or past the TTL nothing - never a later snapshot;
- re-applying is idempotent and the project's Redis keys are removed afterwards.

One module-scoped shop (two dbt runs, ~20 s on the shared machine) serves every test. The definitions without
servers are in tests/unit/test_features.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg.rows import dict_row

from ltvfeed.dbt_runner import run_dbt
from ltvfeed.errors import UserError
from ltvfeed.features import (
    apply,
    clear_online,
    cutoff,
    feast_project,
    feature_store,
    materialize,
    materialize_incremental,
    online_item_features,
    online_user_features,
    serve_command,
    service_join_key,
    training_frame,
)
from ltvfeed.features.live_activity import push_live_activity
from ltvfeed.orchestration.feature_tasks import apply_features, materialize_features
from tests.unit.test_features import TTL

T1 = date(2024, 3, 1)
T2 = date(2024, 3, 3)  # within the views' 3-day TTL of T1, so a cutoff between them still sees T1


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------- the warehouse


def _insert(conn: psycopg.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        cols = ", ".join(row)
        conn.execute(f"insert into raw.{table} ({cols}) values ({', '.join(f'%({c})s' for c in row)})", row)


def load_shop(conn: psycopg.Connection) -> None:
    """u1 buys before T1 and again between T1 and T2; u2 buys only between; u3 signs up between T1 and T2."""
    user = dict(country=None, birth_year=None, gender=None, acquisition_partner_id=None)
    _insert(
        conn,
        "users",
        [
            {**user, "user_id": "u1", "signup_at": ts("2024-01-01 09:00:00"), "country": "de", "birth_year": 1990},
            {**user, "user_id": "u2", "signup_at": ts("2024-02-10 09:00:00"), "gender": "M"},
            {**user, "user_id": "u3", "signup_at": ts("2024-03-02 09:00:00"), "acquisition_partner_id": "p1"},
        ],
    )
    _insert(
        conn,
        "items",
        [
            {"item_id": "i_book", "category": "books", "price": "10.00", "created_at": ts("2023-12-01 00:00:00")},
            {"item_id": "i_tea", "category": "food", "price": "5.50", "is_repeat_purchase": True},
            {"item_id": "i_shoe", "category": "shoes", "price": "50.00", "in_stock": False},
        ],
    )
    orders = [
        ("o1", "u1", "2024-02-20 10:00:00", "20.00", "i_book", 2, "10.00"),
        ("o2", "u1", "2024-03-02 10:00:00", "5.50", "i_tea", 1, "5.50"),
        ("o3", "u2", "2024-03-01 12:00:00", "50.00", "i_shoe", 1, "50.00"),
    ]
    _insert(
        conn,
        "orders",
        [{"order_id": o, "user_id": u, "ordered_at": ts(at), "amount": amt} for o, u, at, amt, *_ in orders],
    )
    _insert(
        conn,
        "order_items",
        [{"order_id": o, "item_id": i, "quantity": q, "unit_price": p} for o, _, _, _, i, q, p in orders],
    )
    events = [
        ("e1", "view", "2024-02-25 10:00:00", "u1", "i_book"),
        ("e2", "view", "2024-02-28 10:00:00", "u2", "i_shoe"),
        ("e3", "click", "2024-03-02 11:00:00", "u2", "i_shoe"),
        ("e4", "view", "2024-03-02 12:00:00", "u3", "i_tea"),
    ]
    _insert(
        conn,
        "events",
        [
            {"event_id": e, "event_type": t, "occurred_at": ts(at), "user_id": u, "item_id": i, "dwell_seconds": 4}
            for e, t, at, u, i in events
        ],
    )
    _insert(
        conn,
        "preferences",
        [{"user_id": "u1", "kind": "profile_category", "category": "books", "created_at": ts("2024-01-02 00:00:00")}],
    )


def fetch(dsn: str, query: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


@dataclass
class Shop:
    stack: Any  # the session stack pointed at this module's warehouse database and Redis project
    dsn: str
    timings: dict[str, float]

    def mart(self, table: str, as_of: date, key: str) -> dict[Any, dict[str, Any]]:
        rows = fetch(self.dsn, f"select * from marts.{table} where as_of = %s", as_of)
        return {r[key]: r for r in rows}


@pytest.fixture(scope="module")
def shop(stack, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    from ltvfeed.db import drop_database
    from ltvfeed.warehouse import ensure_warehouse

    suffix = uuid.uuid4().hex[:6]
    name = f"ltvfeed_test_{run_id}_feast_{suffix}"
    dsn = ensure_warehouse(stack.pg_dsn, name)
    settings = stack.settings.model_copy(
        update={"warehouse_db": name, "redis_prefix": f"{stack.settings.redis_prefix}feast_{suffix}:"}
    )
    s = Shop(dataclasses.replace(stack, settings=settings), dsn, {})
    try:
        with psycopg.connect(dsn) as conn:
            load_shop(conn)
        env = {**stack.env(), "LTVFEED_DBT_DBNAME": name}
        target = tmp_path_factory.mktemp("dbt_target")
        for as_of in (T1, T2):
            start = time.perf_counter()
            run_dbt(env, ["run", "--select", "+user_features", "+item_performance", "+user_recent_purchases",
                "--vars", json.dumps({"as_of": as_of.isoformat()})], target_path=target)  # fmt: skip
            s.timings[f"dbt {as_of}"] = round(time.perf_counter() - start, 1)
        with psycopg.connect(dsn) as conn:  # what LTV batch scoring writes for T2 (view user_ltv)
            for i, user in enumerate(("u1", "u2", "u3")):
                conn.execute(
                    "insert into marts.user_ltv_predictions (user_id, as_of, horizon_days, model_name, "
                    "model_version, prob_return, expected_ltv, p10, p50, p90, feature_timestamp) "
                    "values (%s, %s, 30, 'ltv', '1', 0.5, %s, 0, 1, 2, %s)",
                    (user, T2, 10.0 + i, cutoff(T2)),
                )
        start = time.perf_counter()
        # exactly what the DAG runs: the tasks take Settings and bring the stack up themselves
        applied = apply_features(settings)
        assert applied["project"] == feast_project(settings.redis_prefix) and not applied["deleted"]
        loaded = materialize_features(settings, T2)
        assert not loaded["skipped"] and len(loaded["materialized"]) == 11
        s.timings["apply + materialize"] = round(time.perf_counter() - start, 1)
        push_live_activity(s.stack, [KNOWN["user_id"]])  # the collector's push: live activity has no snapshot
        yield s
    finally:
        try:
            clear_online(s.stack)
        finally:
            drop_database(stack.pg_dsn, name)
        print("\nfeature store timings (s):", s.timings)


def _same(got: Any, want: Any) -> bool:
    if want is None:
        return got is None or (isinstance(got, float) and math.isnan(got))
    if isinstance(want, float | int) and not isinstance(want, bool):
        return got is not None and math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12)
    return got == want


def _assert_matches(row: dict[str, Any], expected: dict[str, Any] | None, columns: list[str], what: str) -> None:
    for c in columns:
        want = None if expected is None else expected[c]
        if isinstance(want, Decimal):
            want = float(want)
        assert _same(row[c], want), f"{what}: {c} = {row[c]!r}, marts say {want!r}"


def _service_columns(shop: Shop, service: str, join_key: str) -> list[str]:
    store = feature_store(shop.stack)
    fs = store.get_feature_service(service)
    return [
        f.name
        for p in fs.feature_view_projections
        if store.get_feature_view(p.name).join_keys == [join_key]
        for f in p.features
    ]


@pytest.mark.integration
def test_online_sdk_returns_latest_snapshot(shop: Shop) -> None:
    store = feature_store(shop.stack)
    users = shop.mart("user_features", T2, "user_id")
    assert set(users) == {"u1", "u2", "u3"}
    columns = _service_columns(shop, "ltv_model", "user_id")
    assert len(columns) > 40
    got = online_user_features(shop.stack, ["u2", "u1", "nobody", "u3"], "ltv_model", store=store)
    assert list(got["user_id"]) == ["u2", "u1", "nobody", "u3"]
    rows = got.to_dict(orient="records")
    for row in rows:
        _assert_matches(row, users.get(row["user_id"]), columns, f"online {row['user_id']}")
    assert rows[1]["frequency"] == 2 and rows[0]["frequency"] == 1  # T2, not T1 (1 and 0)

    items = shop.mart("item_performance", T2, "item_id")
    got_items = online_item_features(shop.stack, list(items), store=store).to_dict(orient="records")
    for row in got_items:
        _assert_matches(row, items[row["item_id"]], _service_columns(shop, "item_catalog", "item_id"), row["item_id"])
    assert {r["item_id"]: r["in_stock"] for r in got_items}["i_shoe"] is False

    # the propensity distribution: pivoted (one read per user) and keyed by (user, category)
    prop = fetch(shop.dsn, "select * from marts.user_category_propensity where as_of = %s and user_id = 'u1'", T2)
    prop.sort(key=lambda r: (-r["propensity"], r["category"]))
    profile = online_user_features(shop.stack, ["u1", "u3"], store=store).to_dict(orient="records")
    assert list(profile[0]["affinity_categories"]) == [r["category"] for r in prop] and len(prop) == 2
    assert list(profile[0]["affinity_propensities"]) == pytest.approx([r["propensity"] for r in prop])
    pair = store.get_online_features(
        features=["user_category_propensity:propensity", "user_category_propensity:is_profile_category"],
        entity_rows=[{"user_id": "u1", "category": r["category"]} for r in prop],
    ).to_dict()
    assert pair["propensity"] == pytest.approx([r["propensity"] for r in prop])
    assert pair["is_profile_category"] == [r["is_profile_category"] for r in prop]

    # loading an older cutoff again is a no-op: Redis keeps the newer snapshot
    windows = materialize_incremental(shop.stack, cutoff(T1), store=store)
    assert all(w.start is None for w in windows)
    again = online_user_features(shop.stack, ["u1"], "ltv_model", store=store).to_dict(orient="records")[0]
    assert again["frequency"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """(HTTP status, body): an error answer is returned, not raised, so that a test can say what it was."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[-2000:]


KNOWN = {"user_id": "u1", "item_id": "i_book"}  # an entity of each kind with values in every view at T2


def _services(shop: Shop) -> dict[str, str]:
    """Every registered feature service -> the one join key it is read by."""
    store = feature_store(shop.stack)
    return {s.name: service_join_key(store, s.name) for s in store.list_feature_services()}


def _assert_each_view_has_values(service: Any, values: dict[str, list], what: str) -> None:
    """Row 0 (a known entity) has a value from every view of the service; row 1 (unknown) has none."""
    for p in service.feature_view_projections:
        names = [f.name for f in p.features]
        assert any(values[n][0] is not None for n in names), f"{what}: view {p.name} gave only nulls: {names}"
        assert all(values[n][1] is None for n in names), f"{what}: an unknown entity got values from {p.name}"


@pytest.mark.integration
def test_every_service_reads_online_with_its_own_key_alone(shop: Shop) -> None:
    """What an app does: the Feast SDK with the service and nothing but its entity's key."""
    store = feature_store(shop.stack)
    services = _services(shop)
    assert set(services.values()) == {"user_id", "item_id"} and len(services) == 6
    for name, key in services.items():
        service = store.get_feature_service(name)
        values = store.get_online_features(features=service, entity_rows=[{key: KNOWN[key]}, {key: "nobody"}]).to_dict()
        assert values[key] == [KNOWN[key], "nobody"]
        _assert_each_view_has_values(service, values, f"SDK {name}")


@pytest.mark.integration
def test_cli_get_reads_each_service_by_its_key(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ltvfeed features get ID --service NAME`: the service's own key, on the running stack, as JSON lines."""
    from typer.testing import CliRunner

    from ltvfeed.cli import app
    from ltvfeed.settings import get_settings

    for key, value in shop.stack.env().items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        users = runner.invoke(app, ["features", "get", "u1", "nobody"])  # default: user_profile
        assert users.exit_code == 0, users.output
        rows = [json.loads(line) for line in users.output.splitlines()]
        assert [r["user_id"] for r in rows] == ["u1", "nobody"]
        assert rows[0]["frequency"] == 2 and rows[0]["expected_ltv"] == 10.0 and rows[1]["frequency"] is None
        items = runner.invoke(app, ["features", "get", "i_shoe", "--service", "item_catalog"])
        assert items.exit_code == 0, items.output
        item = json.loads(items.output)
        assert (item["item_id"], item["price"], item["in_stock"], item["category"]) == ("i_shoe", 50.0, False, "shoes")
        unknown = runner.invoke(app, ["features", "get", "u1", "--service", "ranking"])
        assert isinstance(unknown.exception, UserError) and "item_catalog" in str(unknown.exception)
    finally:
        get_settings.cache_clear()


@pytest.mark.integration
def test_feast_serve_http_answers_every_service(shop: Shop, tmp_path: Path) -> None:
    port = _free_port()
    cmd, env = serve_command(shop.stack, "127.0.0.1", port)
    log = (tmp_path / "feast_serve.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "feast_serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "feast serve did not come up in 180 s"
            time.sleep(0.5)
        store = feature_store(shop.stack)
        for name, key in _services(shop).items():  # the request README shows: the service and its key alone
            status, body = _post(
                f"{url}/get-online-features", {"feature_service": name, "entities": {key: [KNOWN[key], "nobody"]}}
            )
            assert status == 200, f"{name}: HTTP {status} {body}"
            names = body["metadata"]["feature_names"]
            values = {n: result["values"] for n, result in zip(names, body["results"], strict=True)}
            assert values[key] == [KNOWN[key], "nobody"]
            _assert_each_view_has_values(store.get_feature_service(name), values, f"HTTP {name}")

        # the values are the marts' (T2)
        _, body = _post(
            f"{url}/get-online-features", {"feature_service": "ltv_model", "entities": {"user_id": ["u1", "u2"]}}
        )
        names = body["metadata"]["feature_names"]
        values = {name: result["values"] for name, result in zip(names, body["results"], strict=True)}
        assert values["user_id"] == ["u1", "u2"]
        users = shop.mart("user_features", T2, "user_id")
        columns = _service_columns(shop, "ltv_model", "user_id")
        assert set(columns) <= set(values)
        for i, user in enumerate(["u1", "u2"]):
            _assert_matches({c: values[c][i] for c in columns}, users[user], columns, f"HTTP {user}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group this test started (feast + its workers)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.integration
def test_training_frame_is_point_in_time_correct(shop: Shop) -> None:
    t1, t2 = cutoff(T1), cutoff(T2)
    probes = [  # (user, cutoff, which snapshot it must see)
        ("u1", t1 - timedelta(hours=1), None),  # before any snapshot
        ("u1", t1, T1),
        ("u2", t1, T1),
        ("u1", t1 + timedelta(days=1, hours=12), T1),  # between: T1, although T2 exists
        ("u2", t2 - timedelta(seconds=1), T1),
        ("u3", t1 + timedelta(days=1, hours=12), None),  # u3 only exists from T2 on: not seen before
        ("u1", t2, T2),
        ("u3", t2, T2),
        ("u2", t2 + timedelta(days=2), T2),
        ("u2", t2 + TTL + timedelta(hours=1), None),  # T2 is older than the TTL by then
    ]
    entity_df = pd.DataFrame(
        {
            "user_id": [p[0] for p in probes],
            "event_timestamp": [p[1] for p in probes],
            "label": [float(i) for i in range(len(probes))],
        }
    )
    frame = training_frame(shop.stack, entity_df)
    assert len(frame) == len(probes)
    assert list(frame["label"]) == list(entity_df["label"])  # caller's order and extra columns kept
    assert list(frame.columns[:3]) == ["user_id", "event_timestamp", "label"]
    columns = _service_columns(shop, "ltv_model", "user_id")
    marts = {T1: shop.mart("user_features", T1, "user_id"), T2: shop.mart("user_features", T2, "user_id")}
    for row, (user, at, snapshot) in zip(frame.to_dict(orient="records"), probes, strict=True):
        expected = None if snapshot is None else marts[snapshot][user]
        _assert_matches(row, expected, columns, f"{user} at {at.isoformat()}")
    assert marts[T1]["u1"]["frequency"] != marts[T2]["u1"]["frequency"]  # the snapshots do differ

    # plain dates are cutoffs: date D gets the snapshot for as_of D
    by_date = training_frame(shop.stack, pd.DataFrame({"user_id": ["u1", "u1"], "event_timestamp": [T1, T2]}))
    assert list(by_date["frequency"]) == [marts[T1]["u1"]["frequency"], marts[T2]["u1"]["frequency"]]

    with pytest.raises(UserError, match="item_id"):
        training_frame(shop.stack, entity_df, service="item_catalog")
    with pytest.raises(UserError, match="unknown feature service"):
        training_frame(shop.stack, entity_df, service="nope")


@pytest.mark.integration
def test_training_frame_many_rows_on_analysed_marts(shop: Shop) -> None:
    """Marts with statistics (what autovacuum leaves after a dbt build) are where Feast's own plan turned
    quadratic. Repeated (user, time) rows each get their row, the caller's columns keep their types, and the
    uploaded entity rows are dropped afterwards (the speed itself is bench/bench_retrieval.py's job)."""
    with psycopg.connect(shop.dsn, autocommit=True) as conn:
        conn.execute("analyze marts.user_features")
    t1, t2 = cutoff(T1), cutoff(T2)
    probes = [("u1", t1, T1), ("u2", t1 + timedelta(hours=36), T1), ("u3", t2, T2), ("nobody", t2, None)]
    n = 2000
    picks = [probes[i % len(probes)] for i in range(n)]
    entity_df = pd.DataFrame(
        {
            "user_id": [p[0] for p in picks],
            "event_timestamp": [p[1] for p in picks],
            "label": [float(n - i) for i in range(n)],
            "day": pd.Series([p[1].date() for p in picks], dtype=object),
        }
    )
    frame = training_frame(shop.stack, entity_df)
    assert len(frame) == n and list(frame["label"]) == list(entity_df["label"])
    assert list(frame["day"]) == list(entity_df["day"]) and frame["label"].dtype == "float64"
    marts = {T1: shop.mart("user_features", T1, "user_id"), T2: shop.mart("user_features", T2, "user_id")}
    for i in (0, 1, 2, 3, n - 1):
        user, _, snapshot = picks[i]
        expected = None if snapshot is None else marts[snapshot][user]
        _assert_matches(frame.iloc[i].to_dict(), expected, ["frequency", "country", "recency_days"], f"row {i}")
    by_probe = frame.groupby("user_id")["frequency"].nunique(dropna=False)
    assert (by_probe == 1).all()  # every repeat of a probe got the same snapshot
    uploads = "select tablename from pg_tables where schemaname = 'feast' and tablename ~ '^(ltvfeed|feast)_entit'"
    assert fetch(shop.dsn, uploads) == []


@pytest.mark.integration
def test_reapply_is_idempotent_and_keys_are_removed(shop: Shop) -> None:
    """Clears the online store and checks this project left no Redis keys, then loads it again (tests run in
    random order, so the module's other tests must find the store as the fixture left it)."""
    import redis

    again = apply(shop.stack)
    assert again.deleted == [] and len(again.applied) > 10
    client = redis.Redis.from_url(shop.stack.redis_url)
    suffix = feast_project(shop.stack.settings.redis_prefix).encode()
    ours = lambda: [k for k in client.scan_iter(count=1000) if k.endswith(suffix)]  # noqa: E731
    assert len(ours()) >= 3 + 3  # users and items (and user x category pairs)
    clear_online(shop.stack)
    assert ours() == []
    materialize(shop.stack, datetime(2000, 1, 1, tzinfo=UTC), cutoff(T2))  # every view's newest row up to T2
    push_live_activity(shop.stack, [KNOWN["user_id"]])  # and what only pushes write
    assert len(ours()) >= 3 + 3


@pytest.mark.integration
def test_concurrent_applies_of_a_new_project_both_succeed(shop: Shop) -> None:
    """Two DAG runs (a backfill, a trigger and its scheduled run) apply at once: Feast's SQL registry numbers a
    feature view's versions by reading then inserting, and without ltvfeed's lock both applies inserted version 0
    and one failed (seen in the Airflow UI test). A project of its own, so the module's store stays as it was."""
    import threading

    settings = shop.stack.settings.model_copy(update={"redis_prefix": f"{shop.stack.settings.redis_prefix}race_"})
    fresh = dataclasses.replace(shop.stack, settings=settings)
    results: list[object] = []
    start = threading.Barrier(3)

    def run() -> None:
        store = feature_store(fresh)  # each its own registry engine, as two task processes have
        start.wait()
        try:
            results.append(apply(fresh, store=store))
        except Exception as exc:  # the failure is the result under test
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    try:
        assert [type(r).__name__ for r in results] == ["ApplyResult"] * 3, results
        views = feature_store(fresh).list_feature_views()
        assert len(views) == len({v.name for v in views}) > 5
    finally:
        clear_online(fresh)


@pytest.mark.integration
def test_materialisation_waits_for_the_registry_lock(shop: Shop) -> None:
    """A materialisation takes the project's registry lock, as apply does: while another process holds it (an
    apply or a materialisation of another DAG run), it waits, then runs."""
    import threading

    from ltvfeed.features.config import registry_lock

    store = feature_store(shop.stack)
    windows: list[object] = []
    worker = threading.Thread(target=lambda: windows.extend(materialize_incremental(shop.stack, cutoff(T2))))
    with registry_lock(shop.stack, store.project):
        worker.start()
        worker.join(3)
        assert worker.is_alive() and windows == []  # waiting on the lock
    worker.join(120)
    assert not worker.is_alive()
    assert len(windows) == 11 and {w.start for w in windows} <= {None, cutoff(T2)}  # T2 is online: no more loaded

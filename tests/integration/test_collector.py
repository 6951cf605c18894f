"""The event collector against the real PostgreSQL and Redis: storage and idempotency, authentication and key
rotation, status codes and limits, faults (a lost database, Redis down), the Python client, schemathesis cases
from our OpenAPI and README's curl example. Signing, validation and parsing are in
tests/unit/test_collector.py."""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import HealthCheck

from ltvfeed.collector import signing
from ltvfeed.collector.schema import validate_event
from tests.unit.test_collector import NOW, _event

# -- integration: the collector on the real servers --------------------------------------------------------------


@pytest.fixture
def collector(stack, warehouse_dsn: str, tmp_path) -> Iterator[dict]:
    import redis.asyncio as aredis
    from cryptography.fernet import Fernet
    from fastapi.testclient import TestClient

    from ltvfeed.collector.app import create_collector_app
    from ltvfeed.collector.partners import CredentialCache, add_partner, ensure_collector_schema
    from ltvfeed.collector.ratelimit import RateLimiter
    from ltvfeed.collector.writer import GroupCommitWriter

    ensure_collector_schema(warehouse_dsn)
    cipher = Fernet(Fernet.generate_key())
    secrets = {p: add_partner(warehouse_dsn, cipher, p) for p in ("alpha", "beta")}
    secrets["slow"] = add_partner(warehouse_dsn, cipher, "slow", rate_limit_per_s=5)
    writer = GroupCommitWriter(warehouse_dsn).start()
    prefix = f"{stack.settings.redis_prefix}coll{time.time_ns()}:"
    limiter = RateLimiter(aredis.Redis.from_url(stack.redis_url), prefix, default_per_s=100_000)
    app = create_collector_app(CredentialCache(warehouse_dsn, cipher, ttl_s=0).get, writer, limiter)
    with TestClient(app) as client:
        yield {"client": client, "secrets": secrets, "dsn": warehouse_dsn, "cipher": cipher, "app": app}


def _post(
    c: dict,
    partner: str,
    events,
    *,
    secret: str | None = None,
    gz: bool = False,
    ts: float | None = None,
    body: bytes | None = None,
    content_type: str = "application/json",
):
    raw = body if body is not None else json.dumps(events).encode()
    headers = {"Content-Type": content_type}
    if gz:
        raw = gzip.compress(raw)
        headers["Content-Encoding"] = "gzip"
    headers.update(signing.signed_headers(partner, secret or c["secrets"][partner], raw, now=ts))
    return c["client"].post("/v1/events", content=raw, headers=headers)


def _count(dsn: str, sql: str) -> int:
    from ltvfeed.db import connect

    with connect(dsn) as conn:
        return conn.execute(sql).fetchone()[0]


@pytest.mark.integration
def test_events_stored_once_and_retry_is_duplicate(collector) -> None:
    events = [_event(i, item_id=f"i{i}") for i in range(50)] + [_event(0)]  # e0 twice in one batch
    first = _post(collector, "alpha", events, gz=True)
    assert first.status_code == 200, first.text
    assert (first.json()["stored"], first.json()["duplicate"]) == (50, 1)
    again = _post(collector, "alpha", events)
    assert (again.json()["stored"], again.json()["duplicate"]) == (0, 51)
    assert _count(collector["dsn"], "select count(*) from raw.events where source = 'collector'") == 50
    # partner B's event ids are its own: same ids, all stored
    other = _post(collector, "beta", events[:10])
    assert other.json()["stored"] == 10
    assert _count(collector["dsn"], "select count(distinct partner_id) from raw.events") == 2


@pytest.mark.integration
def test_offsets_postgres_cannot_store_are_stored_as_the_same_instant_in_utc(collector) -> None:
    """ISO 8601 allows +16:00, PostgreSQL's timestamptz input does not: found by schemathesis, it failed the
    whole batch (503, good events included, every retry too)."""
    stamp = (NOW - timedelta(hours=2)).astimezone(timezone(timedelta(hours=16)))
    assert validate_event(0, _event(0, timestamp=stamp.isoformat())).timestamp == stamp.astimezone(UTC)
    answer = _post(collector, "alpha", [_event(9900, timestamp=stamp.isoformat()), _event(9901)])
    assert answer.status_code == 200 and answer.json()["stored"] == 2, answer.text
    stored = _count(collector["dsn"], "select occurred_at from raw.events where event_id = 'alpha:e9900'")
    assert stored == stamp


@pytest.mark.integration
def test_rejections_do_not_block_good_events_and_hostile_strings_are_stored_verbatim(collector) -> None:
    sql = "'; drop table raw.events; --"
    events = [
        _event(1, item_id=sql),
        _event(2, item_id="x\x00"),
        {"type": "view"},
        _event(3, note="=cmd|' /C calc'!A0"),
    ]
    answer = _post(collector, "alpha", events).json()
    assert [r["status"] for r in answer["results"]] == ["stored", "rejected", "rejected", "stored"]
    assert answer["results"][1]["index"] == 1 and "NUL" in answer["results"][1]["reason"]
    from ltvfeed.db import connect

    with connect(collector["dsn"]) as conn:
        item = conn.execute("select item_id from raw.events where event_id = 'alpha:e1'").fetchone()[0]
        props = conn.execute("select properties from raw.events where event_id = 'alpha:e3'").fetchone()[0]
    assert item == sql and props == {"note": "=cmd|' /C calc'!A0"}


@pytest.mark.integration
def test_authentication_failures_are_401(collector) -> None:
    ev = [_event(1)]
    assert _post(collector, "alpha", ev, secret="wrong").status_code == 401
    assert _post(collector, "alpha", ev, ts=time.time() - 301).status_code == 401
    raw = json.dumps(ev).encode()
    unknown = collector["client"].post(
        "/v1/events",
        content=raw,
        headers={"Content-Type": "application/json", **signing.signed_headers("ghost", "s", raw)},
    )
    assert unknown.status_code == 401
    assert (
        collector["client"].post("/v1/events", content=raw, headers={"Content-Type": "application/json"}).status_code
        == 401
    )
    # the body is what is signed: a signature for another body fails
    headers = {
        "Content-Type": "application/json",
        **signing.signed_headers("alpha", collector["secrets"]["alpha"], b"[]"),
    }
    assert collector["client"].post("/v1/events", content=raw, headers=headers).status_code == 401
    assert _count(collector["dsn"], "select count(*) from raw.events") == 0


@pytest.mark.integration
def test_rotate_keeps_old_secret_for_grace_and_revoke_stops_partner(collector) -> None:
    from ltvfeed.collector.partners import revoke_partner, rotate_partner

    dsn, old = collector["dsn"], collector["secrets"]["alpha"]
    new = rotate_partner(dsn, collector["cipher"], "alpha", grace_s=60)
    assert _post(collector, "alpha", [_event(1)], secret=old).status_code == 200
    assert _post(collector, "alpha", [_event(2)], secret=new).status_code == 200
    newer = rotate_partner(dsn, collector["cipher"], "alpha", grace_s=0)
    assert _post(collector, "alpha", [_event(3)], secret=old).status_code == 401
    assert _post(collector, "alpha", [_event(4)], secret=newer).status_code == 200
    revoke_partner(dsn, "alpha")
    assert _post(collector, "alpha", [_event(5)], secret=newer).status_code == 401
    with connect_cursor(dsn) as rows:
        stored = rows("select secret_encrypted::text from ops.partners")
    assert all(old not in s and new not in s for (s,) in stored)


def connect_cursor(dsn: str):
    from contextlib import contextmanager

    from ltvfeed.db import connect

    @contextmanager
    def cm():
        with connect(dsn) as conn:
            yield lambda sql: conn.execute(sql).fetchall()

    return cm()


@pytest.mark.integration
def test_status_codes_for_bad_requests(collector) -> None:
    c = collector
    assert _post(c, "alpha", None, body=b"[{", content_type="application/json").status_code == 400
    assert _post(c, "alpha", None, body=b'[{"a":1}]', content_type="text/plain").status_code == 415
    assert _post(c, "alpha", None, body=b"\xff\xfe", content_type="application/json").status_code == 400
    assert _post(c, "alpha", None, body=b"[" * 50_000 + b"]" * 50_000).status_code == 400
    big = b"[" + b" " * (6 * 1024 * 1024) + b"]"
    assert _post(c, "alpha", None, body=big).status_code == 413
    assert _count(c["dsn"], "select count(*) from raw.events") == 0
    # "slow" may send 5 events/s: the second batch of 4 in the same second is refused (one window may be
    # crossed, so allow a few tries), and what was refused is not stored
    answers = [_post(c, "slow", [_event(10 * k + i) for i in range(4)]) for k in range(4)]
    codes = [a.status_code for a in answers]
    assert 429 in codes, codes
    assert all(a.headers["Retry-After"].isdigit() for a in answers if a.status_code == 429)
    assert _count(c["dsn"], "select count(*) from raw.events") == 4 * codes.count(200)


@pytest.mark.integration
def test_order_webhook_and_preferences(collector) -> None:
    order = {
        "event_id": "w1",
        "type": "order",
        "timestamp": NOW.isoformat(),
        "user_id": "u7",
        "order_id": "SHOP-1",
        "amount": "30.00",
        "lines": [
            {"item_id": "i1", "quantity": 1, "unit_price": "10.00"},
            {"item_id": "i2", "quantity": 2, "unit_price": "10.00"},
        ],
    }
    assert _post(collector, "alpha", [order]).json()["stored"] == 1
    assert _post(collector, "beta", [{**order, "event_id": "other"}]).json()["duplicate"] == 1  # one order, once
    assert _count(collector["dsn"], "select count(*) from raw.order_items where order_id = 'SHOP-1'") == 2
    t0 = NOW - timedelta(minutes=5)
    prefs = [
        {"event_id": "p1", "type": "wishlist_add", "timestamp": t0.isoformat(), "user_id": "u7", "item_id": "i5"},
        {
            "event_id": "p2",
            "type": "wishlist_remove",
            "timestamp": (t0 + timedelta(minutes=1)).isoformat(),
            "user_id": "u7",
            "item_id": "i5",
        },
        {"event_id": "p3", "type": "profile_category", "timestamp": t0.isoformat(), "user_id": "u7", "category": "tea"},
    ]
    assert _post(collector, "alpha", prefs).json()["stored"] == 3
    assert _count(collector["dsn"], "select count(*) from raw.preference_events") == 3
    assert _count(collector["dsn"], "select count(*) from raw.preferences where kind = 'wishlist'") == 0
    assert _count(collector["dsn"], "select count(*) from raw.preferences where category = 'tea'") == 1


@pytest.mark.integration
def test_lost_database_connection_gives_503_then_retry_succeeds(collector) -> None:
    from ltvfeed.collector.writer import APPLICATION_NAME
    from ltvfeed.db import connect

    assert _post(collector, "alpha", [_event(1)]).status_code == 200
    with connect(collector["dsn"]) as conn:
        killed = conn.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where application_name = %s and datname = current_database()",
            (APPLICATION_NAME,),
        ).fetchone()[0]
    assert killed == 1
    batch = [_event(i) for i in range(2, 12)]
    failed = _post(collector, "alpha", batch)
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
    assert _count(collector["dsn"], "select count(*) from raw.events") == 1  # nothing of the failed batch kept
    retried = _post(collector, "alpha", batch)
    assert retried.status_code == 200 and retried.json()["stored"] == 10
    assert _count(collector["dsn"], "select count(*) from raw.events") == 11


@pytest.mark.integration
def test_redis_down_rate_limit_fails_open_or_closed(stack, warehouse_dsn: str) -> None:
    import redis.asyncio as aredis
    from cryptography.fernet import Fernet
    from fastapi.testclient import TestClient

    from ltvfeed.collector.app import create_collector_app
    from ltvfeed.collector.partners import CredentialCache, add_partner, ensure_collector_schema
    from ltvfeed.collector.ratelimit import RateLimiter
    from ltvfeed.collector.writer import GroupCommitWriter

    ensure_collector_schema(warehouse_dsn)
    cipher = Fernet(Fernet.generate_key())
    secret = add_partner(warehouse_dsn, cipher, "alpha")
    dead = aredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    for fail_open, expected in ((True, 200), (False, 503)):
        app = create_collector_app(
            CredentialCache(warehouse_dsn, cipher).get,
            GroupCommitWriter(warehouse_dsn).start(),
            RateLimiter(dead, "x:", 1000, fail_open=fail_open),
        )
        with TestClient(app) as client:
            raw = json.dumps([_event(int(fail_open))]).encode()
            headers = {"Content-Type": "application/json", **signing.signed_headers("alpha", secret, raw)}
            assert client.post("/v1/events", content=raw, headers=headers).status_code == expected
    assert _count(warehouse_dsn, "select count(*) from raw.events") == 1


@pytest.mark.integration
def test_python_client_batches_and_retries_with_same_ids(collector) -> None:
    """EventClient over the ASGI app: 2,500 events in 3 batches; sending the same list again stores nothing."""
    from ltvfeed.collector.client import EventClient

    client = EventClient("http://testserver", "alpha", collector["secrets"]["alpha"], batch_size=1000)
    client._http = collector["client"]  # the TestClient is an httpx.Client bound to the app
    events = [_event(i, item_id=f"i{i % 7}") for i in range(2500)]
    assert client.send(events) == {"stored": 2500, "duplicate": 0, "rejected": 0}
    assert client.send(events) == {"stored": 0, "duplicate": 2500, "rejected": 0}
    assert _count(collector["dsn"], "select count(*) from raw.events") == 2500


@pytest.mark.integration
def test_schemathesis_cases_from_our_openapi_never_give_500(collector) -> None:
    """Requests generated by schemathesis from the published OpenAPI (valid and invalid bodies), signed as a
    partner would: every answer is a 2xx/4xx JSON document, never a 500 or a traceback."""
    import schemathesis
    from hypothesis import given as hgiven
    from hypothesis import settings as hsettings

    schema = schemathesis.openapi.from_dict(collector["app"].openapi())
    operation = schema["/v1/events"]["POST"]
    statuses: Counter = Counter()

    @hsettings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @hgiven(case=operation.as_strategy())
    def check(case) -> None:
        raw = json.dumps(case.body, default=str).encode() if case.body is not None else b""
        headers = {
            "Content-Type": "application/json",
            **signing.signed_headers("alpha", collector["secrets"]["alpha"], raw),
        }
        r = collector["client"].post("/v1/events", content=raw, headers=headers)
        statuses[r.status_code] += 1
        assert r.status_code < 500, r.text
        assert "Traceback" not in r.text
        r.json()

    check()
    assert statuses[200] > 0, statuses


@pytest.mark.integration
def test_readme_curl_example_against_ltvfeed_collect(stack, tmp_path) -> None:
    """README's curl + openssl example, run as written against `ltvfeed collect` in its own process; the server
    stops with its process group on SIGTERM."""
    import os
    import re
    import signal
    import socket
    import subprocess
    import sys
    import uuid
    from pathlib import Path

    import httpx

    from ltvfeed.db import drop_database

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = re.search(r"```bash\n(body=.*?)```", readme, re.S).group(1).replace("127.0.0.1:8001", "127.0.0.1:$PORT")
    db = f"ltvfeed_test_readme_{uuid.uuid4().hex[:6]}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        **stack.env(),
        "LTVFEED_WAREHOUSE_DB": db,
        "LTVFEED_STATE_DIR": str(tmp_path),
        "LTVFEED_REDIS_PREFIX": f"readme_{uuid.uuid4().hex[:6]}:",
        "PORT": str(port),
    }
    cli = [sys.executable, "-m", "ltvfeed.cli"]
    try:
        added = subprocess.run([*cli, "partners", "add", "shopx"], env=env, capture_output=True, text=True, check=True)
        env.update(SECRET=added.stdout.strip().splitlines()[-1], PARTNER="shopx")
        server = subprocess.Popen(
            [*cli, "collect", "--port", str(port)],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            out = subprocess.run(["bash", "-c", snippet], env=env, capture_output=True, text=True, check=True)
            assert json.loads(out.stdout)["stored"] == 1, out.stdout + out.stderr
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            assert server.wait(45) is not None  # the shutdown is bounded (writer 10 s, real-time push 5 s)
    finally:
        drop_database(stack.pg_dsn, db)

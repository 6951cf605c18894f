"""The event collector without servers: signing, validation (with hypothesis on the validator), body parsing and
its limits, and the realtime pusher's routing and retries. Storage and faults against the real PostgreSQL and
Redis are in tests/integration/test_collector.py."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltvfeed.collector import signing
from ltvfeed.collector.app import CollectorLimits, _BadRequest, parse_body
from ltvfeed.collector.realtime import Channel, RealtimePusher, any_event, is_order
from ltvfeed.collector.schema import OrderEvent, Rejection, json_schema, validate_event

NOW = datetime.now(UTC).replace(microsecond=0)


def _event(i: int, **kw) -> dict:
    return {"event_id": f"e{i}", "type": "view", "timestamp": NOW.isoformat(), "user_id": "u1", "item_id": "i1", **kw}


# -- unit: signing, schema, body ----------------------------------------------------------------------------------


def test_signature_round_trip_and_tamper() -> None:
    body = b'[{"a":1}]'
    headers = signing.signed_headers("p1", "s3cret", body)
    ts, sig = headers[signing.TIMESTAMP_HEADER], headers[signing.SIGNATURE_HEADER]
    assert signing.matches(["s3cret"], ts, body, sig)
    assert signing.matches(["old", "s3cret"], ts, body, sig)
    assert not signing.matches(["s3cret"], ts, body + b" ", sig)
    assert not signing.matches(["other"], ts, body, sig)
    assert not signing.matches(["s3cret"], str(int(ts) + 1), body, sig)
    assert signing.timestamp_fresh(ts, 300)
    assert not signing.timestamp_fresh(str(int(time.time()) - 301), 300)
    assert not signing.timestamp_fresh("-5", 300) and not signing.timestamp_fresh("1e9", 300)


def test_each_type_validates_and_unknown_fields_go_to_properties() -> None:
    ok = validate_event(0, _event(0, campaign="x", nested={"k": [1, 2]}))
    assert not isinstance(ok, Rejection)
    assert ok.properties == {"campaign": "x", "nested": {"k": [1, 2]}}
    order = validate_event(
        1,
        {
            "event_id": "o1",
            "type": "order",
            "timestamp": NOW.isoformat(),
            "user_id": "u1",
            "order_id": "A1",
            "amount": "12.50",
            "lines": [{"item_id": "i1", "quantity": 2, "unit_price": "6.25"}],
        },
    )
    assert isinstance(order, OrderEvent)
    schema = json_schema()
    assert (schema["version"] == "1" and "oneOf" in json.dumps(schema)) or "discriminator" in json.dumps(schema)


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        (_event(0, type="nope"), "", "tag"),
        ({k: v for k, v in _event(0).items() if k != "item_id"}, "item_id", "required"),
        (_event(0, timestamp="2026-01-01T00:00:00"), "timestamp", "timezone"),
        (_event(0, timestamp=(NOW + timedelta(days=2)).isoformat()), "timestamp", "future"),
        (_event(0, timestamp="0001-01-01T00:00:00+01:00"), "timestamp", "out of range"),
        (_event(0, dwell_seconds=-1), "dwell_seconds", "greater than or equal"),
        (_event(0, item_id="a\x00b"), "item_id", "NUL"),
        (_event(0, note="a\x00b"), "note", "NUL"),
        (
            {
                "event_id": "r",
                "type": "referral_purchase",
                "timestamp": NOW.isoformat(),
                "user_id": "u",
                "order_id": "o",
                "amount": "1.234",
            },
            "amount",
            "decimal",
        ),
        ([1, 2], "", "JSON object"),
    ],
)
def test_bad_events_are_rejected_with_field_and_reason(payload, field: str, reason: str) -> None:
    result = validate_event(3, payload)
    assert isinstance(result, Rejection)
    assert result.index == 3
    assert result.field == field or (field == "" and result.field in ("", "type"))
    assert reason.lower() in result.reason.lower()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    )
)
def test_validator_never_raises(payload) -> None:
    result = validate_event(0, payload)
    assert isinstance(result, Rejection) or result.event_id


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_body_parser_answers_4xx_for_any_bytes(raw: bytes) -> None:
    try:
        payloads, _ = parse_body(raw, "application/json", "", CollectorLimits())
    except _BadRequest as exc:
        assert exc.status in (400, 413)
    else:
        assert isinstance(payloads, list) and payloads


def test_body_parser_limits() -> None:
    limits = CollectorLimits(max_events=3, max_decoded_bytes=1000)
    with pytest.raises(_BadRequest, match="limit is 3") as e:
        parse_body(json.dumps([{}] * 4).encode(), "application/json", "", limits)
    assert e.value.status == 413
    bomb = gzip.compress(b"[" + b" " * 5000 + b"]")
    with pytest.raises(_BadRequest, match="decompressed") as e:
        parse_body(bomb, "application/json", "gzip", limits)
    assert e.value.status == 413
    with pytest.raises(_BadRequest, match="nested too deeply"):
        parse_body(b"[" * 100_000 + b"]" * 100_000, "application/json", "", CollectorLimits())
    with pytest.raises(_BadRequest, match="UTF-8"):
        parse_body(b'[{"a":"\xff"}]', "application/json", "", limits)
    with pytest.raises(_BadRequest, match="not valid JSON"):
        parse_body(b"[NaN]", "application/json", "", limits)
    with pytest.raises(_BadRequest) as e:
        parse_body(b"[]", "application/json", "br", limits)
    assert e.value.status == 415
    assert parse_body(b'{"a":1}\n\n{"b":2}\n', "application/x-ndjson", "", limits) == ([{"a": 1}, {"b": 2}], False)
    assert parse_body(b'[{"a":"x\\u0000"}]', "application/json", "", limits)[1]


def test_realtime_pusher_routes_users_per_channel_and_retries_failed_pushes() -> None:
    calls: dict[str, list[list[str]]] = {"orders": [], "all": []}
    fail = [True]

    def push(name: str):
        def run(users: list[str]) -> int:
            calls[name].append(users)
            if fail[0] and name == "orders":
                raise ConnectionError("redis down")
            return len(users)

        return run

    pusher = RealtimePusher(
        [Channel("orders", is_order, push("orders")), Channel("all", any_event, push("all"))], interval_s=3600
    )
    order = validate_event(
        0,
        {
            "event_id": "o",
            "type": "order",
            "timestamp": NOW.isoformat(),
            "user_id": "u9",
            "order_id": "A",
            "amount": "1",
            "lines": [{"item_id": "i", "quantity": 1, "unit_price": "1"}],
        },
    )
    other = validate_event(1, _event(1))
    pusher.after_commit([("p", order), ("p", other)])
    pusher.flush()  # the order channel fails: its user stays queued; the other channel went through
    assert calls == {"orders": [["u9"]], "all": [sorted({"u9", other.user_id})]}
    fail[0] = False
    pusher.flush()
    assert calls["orders"] == [["u9"], ["u9"]] and len(calls["all"]) == 1
    assert pusher.pushed == 1 + len({"u9", other.user_id})


def test_realtime_pusher_drops_users_when_the_feature_store_was_never_applied(caplog) -> None:
    from ltvfeed.features.recent_purchases import FeatureStoreNotApplied

    calls: list[list[str]] = []

    def push(users: list[str]) -> int:
        calls.append(users)
        raise FeatureStoreNotApplied("no push source yet (run `ltvfeed features apply`)")

    pusher = RealtimePusher([Channel("live_activity", any_event, push)], interval_s=3600)
    for k in range(2):
        pusher.after_commit([("p", validate_event(k, _event(k)))])
        pusher.flush()
    pusher.flush()  # nothing queued: dropped, not retried
    assert calls == [["u1"], ["u1"]] and pusher.pushed == 0
    assert sum("not pushed online" in r.message for r in caplog.records) == 1  # warned once


def test_realtime_pusher_close_pushes_the_last_round_but_never_waits_past_its_timeout(caplog) -> None:
    """SIGTERM must stop the collector promptly: close() pushes what is queued, but a push stuck on a slow feature
    store is left behind (with a warning) once the timeout passes."""
    import threading
    import time

    pushed: list[list[str]] = []
    pusher = RealtimePusher([Channel("all", any_event, lambda users: pushed.append(users) or len(users))], 3600).start()
    pusher.after_commit([("p", validate_event(0, _event(0)))])
    pusher.close(timeout_s=5)
    assert pushed == [["u1"]] and pusher.pushed == 1

    release = threading.Event()
    stuck = RealtimePusher([Channel("all", any_event, lambda users: release.wait(30) and 0)], 3600).start()
    stuck.after_commit([("p", validate_event(1, _event(1)))])
    started = time.monotonic()
    stuck.close(timeout_s=0.2)
    assert time.monotonic() - started < 5
    assert any("push still running" in r.message for r in caplog.records)
    release.set()

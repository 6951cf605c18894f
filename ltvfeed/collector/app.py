"""``POST /v1/events``: the partner event collector, its own process (``ltvfeed collect``) so that ingest load
never slows the feed API.

Order of checks, cheapest first: content type and encoding (415), size (413), signature and replay window
(401), body syntax (400), the partner's rate limit (429), then per-event validation. Valid events are
committed to PostgreSQL (group commit, :mod:`ltvfeed.collector.writer`) before the 200, whose body accounts for
every event: ``stored``, ``duplicate`` or ``rejected`` with its index, field and reason. When the warehouse
cannot commit the whole request gets 503 and nothing of it is kept, so retrying with the same ids is safe.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ltvfeed.collector import signing
from ltvfeed.collector.partners import Credentials
from ltvfeed.collector.ratelimit import RateLimited, RateLimiter
from ltvfeed.collector.schema import SCHEMA_VERSION, Rejection, json_schema, validate_event
from ltvfeed.collector.writer import GroupCommitWriter

log = logging.getLogger(__name__)

EVENTS_ROUTE = "/v1/events"
JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


@dataclass(frozen=True)
class CollectorLimits:
    max_body_bytes: int = 5 * 1024 * 1024  # as sent (compressed or not)
    max_decoded_bytes: int = 32 * 1024 * 1024  # after gunzip: bounds a zip bomb
    max_events: int = 10_000
    max_depth: int = 16  # nesting of JSON containers inside one event
    commit_timeout_s: float = 15.0
    replay_window_s: int = 300


class EventOutcome(BaseModel):
    index: int
    event_id: str | None = None
    status: str  # stored | duplicate | rejected
    field: str | None = None
    reason: str | None = None


class EventsResponse(BaseModel):
    schema_version: str = SCHEMA_VERSION
    stored: int
    duplicate: int
    rejected: int
    results: list[EventOutcome]


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            if d > limit:
                return False
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return True


def _nested(payload: dict[str, Any]) -> bool:
    return any(isinstance(v, dict | list) for v in payload.values())


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def media_type(content_type: str) -> str:
    """The request's media type; raises _BadRequest(415) unless it is JSON or NDJSON."""
    media = content_type.split(";")[0].strip().lower()
    if media not in JSON_TYPES + NDJSON_TYPES:
        raise _BadRequest(415, f"content type {media or 'none'!r}: send application/json or application/x-ndjson")
    return media


def parse_body(raw: bytes, media: str, encoding: str, limits: CollectorLimits) -> tuple[list[Any], bool]:
    """(the event payloads in a request body, whether any string in it may hold U+0000 — JSON can carry it only
    as the escape ``\\u0000``); raises _BadRequest with the status and a one-line reason."""
    enc = encoding.strip().lower()
    if enc == "gzip":
        try:
            d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            raw = d.decompress(raw, limits.max_decoded_bytes + 1)
            if len(raw) > limits.max_decoded_bytes:
                raise _BadRequest(413, f"body over {limits.max_decoded_bytes} bytes once decompressed")
            if not d.eof:
                raise _BadRequest(400, "gzip body is truncated")
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise _BadRequest(400, "body is not valid gzip") from exc
    elif enc not in ("", "identity"):
        raise _BadRequest(415, f"content encoding {enc!r}: send gzip or no encoding")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadRequest(400, f"body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        if media in NDJSON_TYPES:
            payloads = [json.loads(line, parse_constant=_reject_constant) for line in text.splitlines() if line.strip()]
        else:
            parsed = json.loads(text, parse_constant=_reject_constant)
            payloads = parsed if isinstance(parsed, list) else [parsed]
    except RecursionError as exc:
        raise _BadRequest(400, "body is nested too deeply") from exc
    except ValueError as exc:
        raise _BadRequest(400, f"body is not valid JSON: {str(exc).splitlines()[0][:200]}") from exc
    if not payloads:
        raise _BadRequest(400, "body holds no events")
    if len(payloads) > limits.max_events:
        raise _BadRequest(413, f"{len(payloads)} events in one request; the limit is {limits.max_events}")
    return payloads, "\\u0000" in text


def _openapi_with_event_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI plus the request body of POST /v1/events (read raw, so FastAPI cannot infer it): an
    array of events, each one of the published event types."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    from ltvfeed.collector.schema import EVENT_ADAPTER

    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    event = EVENT_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    components.update(event.pop("$defs", {}))
    components["Event"] = event
    body = {"type": "array", "items": {"$ref": "#/components/schemas/Event"}, "minItems": 1}
    spec["paths"][EVENTS_ROUTE]["post"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": body}, "application/x-ndjson": {"schema": {"type": "string"}}},
    }
    app.openapi_schema = spec
    return spec


def create_collector_app(
    credentials: Callable[[str], Credentials | None],
    writer: GroupCommitWriter,
    limiter: RateLimiter | None = None,
    limits: CollectorLimits | None = None,
    *,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The collector over a credential lookup (partner id -> live secrets) and a started writer."""
    limits = limits or CollectorLimits()
    counters = {"requests": 0, "stored": 0, "duplicate": 0, "rejected": 0, "failed_commits": 0}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        writer.close()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(
        title="ltvfeed event collector",
        version=SCHEMA_VERSION,
        summary="Signed, idempotent ingestion of partner and shop events.",
        description=(
            "Send a batch of events as a JSON array or NDJSON (optionally gzip). Sign `timestamp + '.' + body` "
            "with HMAC-SHA256 and your secret; headers `X-Ltvfeed-Partner`, `X-Ltvfeed-Timestamp`, "
            "`X-Ltvfeed-Signature: v1=<hex>`. A 200 is sent only after the events are committed; retrying a "
            "batch is safe (event ids are stored once per partner). The event schema: `GET /v1/schema/events.json`."
        ),
        lifespan=lifespan,
    )
    app.state.counters = counters
    app.openapi = lambda: _openapi_with_event_schema(app)  # type: ignore[method-assign]
    lookup = asyncio.Lock()

    async def authenticate(request: Request, body: bytes) -> tuple[str, Credentials]:
        partner = request.headers.get(signing.PARTNER_HEADER, "")
        ts = request.headers.get(signing.TIMESTAMP_HEADER, "")
        given = request.headers.get(signing.SIGNATURE_HEADER, "")
        if not partner or not ts or not given:
            raise _BadRequest(401, "missing signature headers (X-Ltvfeed-Partner, -Timestamp, -Signature)")
        if not signing.timestamp_fresh(ts, limits.replay_window_s):
            raise _BadRequest(401, f"timestamp outside the {limits.replay_window_s} s replay window")
        try:
            async with lookup:  # one credential read at a time; the cache answers almost every request
                creds = await asyncio.to_thread(credentials, partner)
        except Exception as exc:  # the partner registry (PostgreSQL) cannot be read now
            log.warning("collector: credential lookup failed (%s)", type(exc).__name__)
            raise _BadRequest(
                503, "cannot check credentials now; nothing was stored, retry", {"Retry-After": "1"}
            ) from exc
        if creds is None or not signing.matches(list(creds.secrets), ts, body, given):
            raise _BadRequest(401, "unknown or revoked partner, or bad signature")
        return partner, creds

    @app.post(
        EVENTS_ROUTE,
        response_model=EventsResponse,
        tags=["events"],
        summary="Store a batch of events",
        responses={
            400: {"description": "malformed body"},
            401: {"description": "unknown or revoked partner, bad signature or stale timestamp"},
            413: {"description": "body or batch too large"},
            415: {"description": "unsupported content type or encoding"},
            429: {"description": "partner's rate limit exceeded (see Retry-After)"},
            503: {"description": "the warehouse cannot commit now; nothing was stored, retry (see Retry-After)"},
        },
    )
    async def post_events(request: Request) -> Any:
        counters["requests"] += 1
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            return _error(400, "content-length is not a number")
        if declared > limits.max_body_bytes:
            return _error(413, f"body over {limits.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                return _error(413, f"body over {limits.max_body_bytes} bytes")
        raw = bytes(body)
        try:
            media = media_type(request.headers.get("content-type", ""))
            partner, creds = await authenticate(request, raw)
            encoding = request.headers.get("content-encoding", "")
            payloads, check_nul = parse_body(raw, media, encoding, limits)
            if limiter is not None:
                await limiter.check(partner, len(payloads), creds.rate_limit_per_s)
        except (_BadRequest, RateLimited) as exc:
            return _error(exc.status, exc.message, exc.headers)

        # Plain dicts, not pydantic models, for the per-event answers: this loop runs for every event.
        results: list[dict[str, Any] | None] = [None] * len(payloads)
        valid = []
        for i, payload in enumerate(payloads):
            if isinstance(payload, dict) and _nested(payload) and not _depth_ok(payload, limits.max_depth):
                checked: Any = Rejection(index=i, field="", reason=f"nested deeper than {limits.max_depth} levels")
            else:
                checked = validate_event(i, payload, check_nul=check_nul)
            if isinstance(checked, Rejection):
                event_id = payload.get("event_id") if isinstance(payload, dict) else None
                results[i] = {
                    "index": i,
                    "event_id": event_id if isinstance(event_id, str) else None,
                    "status": "rejected",
                    "field": checked.field,
                    "reason": checked.reason,
                }
            else:
                valid.append((i, checked))
        try:
            outcome = await asyncio.wait_for(
                asyncio.wrap_future(writer.submit(partner, [e for _, e in valid])), limits.commit_timeout_s
            )
        except Exception as exc:
            counters["failed_commits"] += 1
            log.warning("collector: 503 for %d events from %s (%s)", len(valid), partner, type(exc).__name__)
            return _error(
                503, "the warehouse could not commit these events; nothing was stored, retry", {"Retry-After": "1"}
            )
        for (i, event), status in zip(valid, outcome, strict=True):
            results[i] = {"index": i, "event_id": event.event_id, "status": status}
        summary = Counter(r["status"] for r in results if r is not None)
        answer = {s: summary.get(s, 0) for s in ("stored", "duplicate", "rejected")}
        for key, value in answer.items():
            counters[key] += value
        return JSONResponse({"schema_version": SCHEMA_VERSION, **answer, "results": results})

    @app.get("/v1/schema/events.json", tags=["schema"], summary="The versioned JSON Schema of one event")
    async def schema() -> dict[str, Any]:
        return json_schema()

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "writer_healthy": writer.healthy, "commits": writer.commits, **counters}

    return app

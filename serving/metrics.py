"""Prometheus metrics of the feed API, in a registry owned by one app (no process-wide globals, so that
several apps - e.g. in tests - never share or double-register counters).

With ``--workers N > 1`` every worker process has its own registry; a scrape sees one worker's figures.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Millisecond resolution where the latency target (p99 <= 10 ms) is, coarse above.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
UNMATCHED_ROUTE = "<unmatched>"


class ApiMetrics:
    """Everything the API counts. Routes are labelled by their template (``/v1/users/{user_id}/feed``), never by
    the raw path, so that label cardinality stays bounded."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ltvfeed_api_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "ltvfeed_api_request_duration_seconds",
            "Request latency in seconds, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.classic_fallbacks = Counter(
            "ltvfeed_api_classic_fallbacks",
            "Feeds answered with the classic feed because the user has no personal feed in the served generation.",
            registry=r,
        )
        self.degraded = Counter(
            "ltvfeed_api_degraded_responses",
            "Feeds answered from the in-memory classic feed: Redis unavailable, or serving no generation (lost).",
            registry=r,
        )
        self.redis_errors = Counter(
            "ltvfeed_api_redis_errors", "Redis calls that failed (connection refused, timeout, ...).", registry=r
        )
        self.unavailable = Counter(
            "ltvfeed_api_feed_unavailable",
            "Feed requests answered 503: no committed generation, or Redis down before any classic feed was cached.",
            registry=r,
        )
        self.freshness_failures = Counter(
            "ltvfeed_api_freshness_failures",
            "Freshness filter calls that raised; the feed was served unfiltered.",
            registry=r,
        )
        self.republished = Counter(
            "ltvfeed_api_generations_republished",
            "Feed generations this process put back into Redis from their archive after Redis lost them.",
            registry=r,
        )
        self.redis_up = Gauge("ltvfeed_api_redis_up", "1 if the last Redis call succeeded, else 0.", registry=r)
        self.generation = Info(
            "ltvfeed_api_feed_generation", "The feed generation this process last saw being served.", registry=r
        )

    def set_generation(self, generation: str, generated_at: str | None) -> None:
        self.generation.info({"generation": generation, "generated_at": generated_at or ""})

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware): counts and times every HTTP request.
    The route template is read from the scope after routing; FastAPI puts the matched route there."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)

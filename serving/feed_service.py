"""What the feed API serves, independent of HTTP: the user's feed from the served generation, the classic feed
for users without one, and - when Redis fails - the last known classic feed held in memory.

Why a breaker: with Redis hanging, every call costs a full socket timeout and blocks a worker thread. After a
failure, requests skip Redis for ``cooldown_s`` and are answered from memory at once; the next request after
that probes Redis again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ltvfeed.errors import UserError
from ltvfeed.serving.feed import Feed, FeedItem
from ltvfeed.serving.feed_store import COMMITTED, FeedStore, GenerationMeta
from ltvfeed.serving.freshness import FreshnessFilter
from ltvfeed.serving.inputs import CLASSIC_USER_ID
from ltvfeed.serving.metrics import ApiMetrics

log = logging.getLogger(__name__)

FRESHNESS_OFF, FRESHNESS_APPLIED, FRESHNESS_UNAVAILABLE = "off", "applied", "unavailable"
_KEEP_META = 4  # generations whose metadata stay cached: current + a few recent ones (rollbacks)


class FeedUnavailable(Exception):
    """No valid feed can be served at all (-> 503): nothing committed yet, or Redis down with nothing cached."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ServedFeed:
    """One answer: the items (filtered, truncated) and where they came from."""

    user_id: str
    items: tuple[FeedItem, ...]
    generation: str | None
    generated_at: str | None
    personalised: bool
    degraded: bool
    freshness: str


@dataclass(frozen=True)
class Readiness:
    ready: bool
    generation: str | None
    reason: str | None


def with_redis_timeouts(redis_url: str, timeout_s: float) -> str:
    """``redis_url`` with socket connect/read timeouts set (redis-py reads them from the query string), keeping
    any other options; explicit timeouts already in the URL win."""
    if not timeout_s > 0:
        raise UserError(f"Redis timeout must be > 0 seconds, got {timeout_s!r}")
    parts = urlsplit(redis_url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_timeout", str(timeout_s))
    query.setdefault("socket_connect_timeout", str(timeout_s))
    return urlunsplit(parts._replace(query=urlencode(query)))


def open_serving_store(redis_url: str, prefix: str, *, timeout_s: float) -> FeedStore:
    """A read-side :class:`FeedStore` that fails fast: short socket timeouts and no retries, so that a dead or
    hanging Redis costs a request at most one timeout (the caller falls back)."""
    store = FeedStore(redis_url, prefix)
    store.client.set_retry(Retry(NoBackoff(), 0))
    return store


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


class FeedService:
    """Reads feeds through a :class:`FeedStore`; thread-safe for the sync request handlers (shared state is only
    replaced by single reference assignments)."""

    def __init__(
        self,
        store: FeedStore,
        metrics: ApiMetrics,
        *,
        freshness: FreshnessFilter | None = None,
        cooldown_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.freshness = freshness
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._classic: Feed | None = None  # last known classic feed (carries its generation)
        self._classic_read_for: str | None = None  # generation whose classic feed was last looked up
        self._meta: dict[str, GenerationMeta] = {}
        self._skip_redis_until = 0.0

    # ---- the public operations ------------------------------------------------------------------------------
    def warm(self) -> bool:
        """Load the served generation's classic feed into memory (at start-up); False if Redis is unavailable."""
        try:
            generation = self.store.current_generation()
            if generation is not None:
                self._refresh_classic(generation)
            self._redis_answered()
            return True
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return False

    def feed(self, user_id: str, n: int) -> ServedFeed:
        """The best feed that can be served now; raises :class:`FeedUnavailable` when there is none."""
        if self.clock() < self._skip_redis_until:
            return self._degraded(user_id, n)
        try:
            served = self._from_redis(user_id, n)
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return self._degraded(user_id, n)
        self._redis_answered()
        return served

    def readiness(self) -> Readiness:
        """Ready = Redis answers now (the breaker is bypassed) and a committed generation is served."""
        try:
            self.store.client.ping()
            generation = self.store.current_generation()
            meta = None if generation is None else self._generation_meta(generation, refresh=True)
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return Readiness(False, None, f"Redis unavailable: {exc}")
        self._redis_answered()
        if generation is None:
            return Readiness(False, None, "no committed feed generation yet (publish one first)")
        if meta is None or meta.status != COMMITTED:
            status = "missing" if meta is None else meta.status
            return Readiness(False, generation, f"served generation {generation} has status {status}, not committed")
        return Readiness(True, generation, None)

    # ---- reading --------------------------------------------------------------------------------------------
    def _from_redis(self, user_id: str, n: int) -> ServedFeed:
        personal = None if user_id == CLASSIC_USER_ID else self._read_personal(user_id)
        if personal is not None:
            if personal.generation is not None and personal.generation != self._classic_read_for:
                self._refresh_classic(personal.generation)  # once per generation: keeps the fallback current
            return self._serve(user_id, personal, n, personalised=True, degraded=False)
        generation = self.store.current_generation()
        if generation is None:
            raise FeedUnavailable("no committed feed generation yet")
        classic = self._classic if generation == self._classic_read_for else self._refresh_classic(generation)
        if classic is None:
            raise FeedUnavailable(f"served generation {generation} has no classic feed and none is cached")
        self.metrics.classic_fallbacks.inc()
        return self._serve(user_id, classic, n, personalised=False, degraded=False)

    def _read_personal(self, user_id: str) -> Feed | None:
        try:
            return self.store.read_feed(user_id)
        except UserError:  # a stored feed in a format this code cannot read: serve the classic feed instead
            log.exception("unreadable stored feed for user %s; serving the classic feed", user_id)
            return None

    def _refresh_classic(self, generation: str) -> Feed | None:
        """Re-read the served classic feed; on a generation without one, keep the last known one."""
        classic = self.store.read_classic()
        self._classic_read_for = generation
        if classic is not None:
            self._classic = classic
            if classic.generation is not None:
                self._generation_meta(classic.generation)
        return classic if classic is not None else self._classic

    def _generation_meta(self, generation: str, *, refresh: bool = False) -> GenerationMeta | None:
        """Metadata of a generation, read once (what is served from it does not change), or now if ``refresh``."""
        meta = None if refresh else self._meta.get(generation)
        if meta is None:
            meta = self.store.generation_meta(generation)
            if meta is None:
                return None
            kept = {g: m for g, m in self._meta.items() if g != generation}
            self._meta = dict(list(kept.items())[-(_KEEP_META - 1) :]) | {generation: meta}
            if meta.status == COMMITTED:
                self.metrics.set_generation(generation, meta.generated_at)
        return meta

    def _degraded(self, user_id: str, n: int) -> ServedFeed:
        classic = self._classic
        if classic is None:
            raise FeedUnavailable("Redis is unavailable and no classic feed has been cached yet")
        self.metrics.degraded.inc()
        return self._serve(user_id, classic, n, personalised=False, degraded=True)

    def _serve(self, user_id: str, feed: Feed, n: int, *, personalised: bool, degraded: bool) -> ServedFeed:
        meta = None if feed.generation is None else self._meta.get(feed.generation)
        if meta is None and feed.generation is not None and not degraded:
            meta = self._generation_meta(feed.generation)
        generated_at = None if meta is None else meta.generated_at or None
        items, freshness = self._apply_freshness(user_id, feed.items, generated_at)
        return ServedFeed(
            user_id=user_id,
            items=tuple(items[:n]),
            generation=feed.generation,
            generated_at=generated_at,
            personalised=personalised,
            degraded=degraded,
            freshness=freshness,
        )

    def _apply_freshness(
        self, user_id: str, items: tuple[FeedItem, ...], generated_at: str | None
    ) -> tuple[tuple[FeedItem, ...], str]:
        if self.freshness is None:
            return items, FRESHNESS_OFF
        try:
            return tuple(self.freshness(user_id, items, _parse_time(generated_at))), FRESHNESS_APPLIED
        except Exception:  # any failure of the filter must not cost the user the feed
            log.exception("freshness filter failed for user %s; serving the feed unfiltered", user_id)
            self.metrics.freshness_failures.inc()
            return items, FRESHNESS_UNAVAILABLE

    # ---- Redis health ---------------------------------------------------------------------------------------
    def _redis_failed(self, exc: Exception) -> None:
        if self.clock() >= self._skip_redis_until:  # log once per outage window, not once per request
            log.warning("Redis unavailable (%s); serving from memory for %.2f s", exc, self.cooldown_s)
        self._skip_redis_until = self.clock() + self.cooldown_s
        self.metrics.redis_errors.inc()
        self.metrics.redis_up.set(0)

    def _redis_answered(self) -> None:
        self._skip_redis_until = 0.0
        self.metrics.redis_up.set(1)

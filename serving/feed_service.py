"""What the feed API serves, independent of HTTP: the user's feed from the served generation, the classic feed
for users without one, and - when Redis fails - the last known classic feed held in memory. That feed is also
kept in a file under the state dir (``api/classic-feed-<prefix>.json``), so an API (re)started while Redis is
down still answers with it instead of 503.

Why asyncio for the reads: a Redis GET costs ~0.1 ms of CPU, less than handing a request to a worker thread and
back, and worker threads doing socket I/O under load queue for the GIL. So each request's reads run on the event
loop through an asyncio client that mirrors the :class:`FeedStore`'s connection (same server, timeouts) and uses
its key layout; the rare reads (generation metadata) go through the store itself in a thread.

Why a breaker: with Redis hanging, every call costs a full socket timeout. After a failure, requests skip Redis
for ``cooldown_s`` and are answered from memory at once; the next request after that probes Redis again.

Redis back but empty (restarted without its data): the pointer is gone, yet the API knows a generation. It keeps
answering with that generation's classic feed from memory, flagged degraded, and - given a ``heal`` callable
(:func:`ltvfeed.serving.feed_archive.republish_if_lost` in a worker thread, at most once per ``heal_interval_s``)
- puts the generation back from its archive, after which personal feeds are served again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio.to_thread
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from ltvfeed.cutoff import cutoff_instant, parse_as_of
from ltvfeed.errors import UserError
from ltvfeed.frames.inputs import CLASSIC_USER_ID
from ltvfeed.serving.config import CLASSIC_FEED, PERSONALISED_FEED, VARIANT_PREFIX
from ltvfeed.serving.feed import Feed, FeedItem
from ltvfeed.serving.feed_store import COMMITTED, FeedStore, GenerationMeta
from ltvfeed.serving.freshness import FreshnessFilter
from ltvfeed.serving.metrics import ApiMetrics

log = logging.getLogger(__name__)

FRESHNESS_OFF, FRESHNESS_APPLIED, FRESHNESS_UNAVAILABLE = "off", "applied", "unavailable"
_KEEP_META = 4  # generations whose metadata stay cached: current + a few recent ones (rollbacks)
_REDIS_ERRORS = (redis.RedisError, OSError)  # OSError (incl. TimeoutError): anything the socket layer lets through
_ASYNC_CONNECTION = {
    redis.connection.Connection: redis.asyncio.connection.Connection,
    redis.connection.SSLConnection: redis.asyncio.connection.SSLConnection,
    redis.connection.UnixDomainSocketConnection: redis.asyncio.connection.UnixDomainSocketConnection,
}


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
    available: int  # items the feed held after filtering, before the cut to n
    feed: str = CLASSIC_FEED  # which feed was served: classic | personalised | variant:NAME


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
    store = FeedStore(with_redis_timeouts(redis_url, timeout_s), prefix)
    store.client.set_retry(Retry(NoBackoff(), 0))
    return store


def writer_store_for(store: FeedStore, archive_dir: Path | None = None) -> FeedStore:
    """A :class:`FeedStore` on the same server as the fail-fast ``store`` with redis-py's usual timeouts and
    retries: what the API's self-heal writes a whole generation back through."""
    pool = store.client.connection_pool
    skip = ("socket_timeout", "socket_connect_timeout", "retry")
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k not in skip}
    client = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))
    return FeedStore(client, store.prefix, archive_dir=archive_dir)


def async_client_for(store: FeedStore, *, decode_responses: bool = True) -> redis.asyncio.Redis:
    """An asyncio client to the same server, database, credentials and timeouts as ``store.client``; no retries.
    ``decode_responses=False`` for replies that are bytes (Feast's protobuf values)."""
    pool = store.client.connection_pool
    connection_class = _ASYNC_CONNECTION.get(pool.connection_class)
    if connection_class is None:
        raise UserError(f"the feed API cannot read Redis through a {pool.connection_class.__name__} connection")
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "retry"}
    kwargs["decode_responses"] = decode_responses
    async_pool = redis.asyncio.ConnectionPool(
        connection_class=connection_class, retry=AsyncRetry(NoBackoff(), 0), **kwargs
    )
    return redis.asyncio.Redis(connection_pool=async_pool)


def _text(raw: str | bytes) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def data_cutoff(meta: GenerationMeta | None) -> datetime | None:
    """Where a generation's knowledge ends: its ``as_of`` 00:00 UTC (feed generation reads only data before it),
    else when it was generated; None if neither is known. What the freshness filter gets as ``since``."""
    if meta is None:
        return None
    try:
        as_of = parse_as_of((meta.extra or {}).get("as_of"))
    except UserError:
        as_of = None
    return cutoff_instant(as_of) if as_of is not None else _parse_time(meta.generated_at)


def classic_copy_path(state_dir: Path, redis_prefix: str) -> Path:
    """Where an API keeps its last known classic feed: one file per key prefix (project)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in redis_prefix) or "default"
    return state_dir / "api" / f"classic-feed-{safe}.json"


def write_classic_copy(path: Path, feed: Feed) -> None:
    """Atomically (temporary file, then rename): a reader never sees half a feed. Failing to write only costs
    the copy, never the request."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(feed.to_json(), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        log.exception("could not keep the classic feed at %s", path)


def read_classic_copy(path: Path) -> Feed | None:
    """The kept classic feed, or None when there is none (or it cannot be read: it is only a fallback)."""
    try:
        return Feed.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UserError, ValueError, KeyError, TypeError):
        log.exception("ignoring the unreadable classic feed copy %s", path)
        return None


class FeedService:
    """Reads feeds for the API. Runs on one event loop; shared state is only replaced by single assignments, so
    the metadata reads done in a worker thread are safe too."""

    def __init__(
        self,
        store: FeedStore,
        metrics: ApiMetrics,
        *,
        freshness: FreshnessFilter | None = None,
        freshness_timeout_s: float = 0.05,
        cooldown_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        classic_copy: Path | None = None,
        heal: Callable[[str | None], str | None] | None = None,
        heal_interval_s: float = 10.0,
    ) -> None:
        self.store = store
        self.classic_copy = classic_copy  # the last known classic feed on disk: survives an API restart
        self.client = async_client_for(store)
        self.metrics = metrics
        self.freshness = freshness
        # the filter's online row, read pipelined with the feed (bytes: protobuf values) when it offers one
        self._row = getattr(freshness, "row", None)
        self._raw_client = None if self._row is None else async_client_for(store, decode_responses=False)
        self.freshness_timeout_s = freshness_timeout_s
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._classic: Feed | None = None  # last known classic feed (carries its generation)
        self._classic_read_for: str | None = None  # generation whose classic feed was last looked up
        self._meta: dict[str, GenerationMeta] = {}
        self._skip_redis_until = 0.0
        self.heal = heal  # blocking: restores a lost generation (its argument: the last one served)
        self.heal_interval_s = heal_interval_s
        self._next_heal = 0.0
        self._heal_task: asyncio.Task | None = None

    async def aclose(self) -> None:
        if self._heal_task is not None:
            await asyncio.wait([self._heal_task], timeout=30)
        await self.client.aclose()
        if self._raw_client is not None:
            await self._raw_client.aclose()

    # ---- the public operations ------------------------------------------------------------------------------
    async def warm(self) -> bool:
        """Load the served generation's classic feed into memory (at start-up); False if Redis is unavailable.
        The copy on disk comes first: an API restarted while Redis is down still has a valid feed to serve."""
        if self._classic is None and self.classic_copy is not None:
            self._classic = await anyio.to_thread.run_sync(read_classic_copy, self.classic_copy)
        try:
            generation = await self.client.get(self.store.pointer_key)
            if generation is not None:
                await self._refresh_generation(generation)
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return False
        self._redis_answered()
        return True

    async def feed(self, user_id: str, n: int, *, classic_only: bool = False, variant: str | None = None) -> ServedFeed:
        """The best feed that can be served now; raises :class:`FeedUnavailable` when there is none.
        ``classic_only``: the classic feed even for a user with a personal one (an experiment's control arm, the
        long-term holdout). ``variant``: that variant's feed of the user, else (the generation lacks it) the
        personalised one; :attr:`ServedFeed.feed` says which."""
        if self.clock() < self._skip_redis_until:
            return await self._degraded(user_id, n)
        try:
            personal, served_as, generation, fresh = await self._read(user_id, variant)
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return await self._degraded(user_id, n)
        self._redis_answered()
        if generation is None:  # Redis answers but serves nothing: lost (empty restart), or never committed
            self._start_heal()
            if self._classic is None:
                raise FeedUnavailable("no committed feed generation yet")
            return await self._degraded(user_id, n)
        if personal is not None and not classic_only:
            return await self._serve(
                user_id, personal, n, personalised=True, degraded=False, fresh=fresh, served_as=served_as
            )
        classic = self._classic
        if classic is None:
            raise FeedUnavailable(f"served generation {generation} has no classic feed and none is cached")
        self.metrics.classic_fallbacks.inc()
        return await self._serve(user_id, classic, n, personalised=False, degraded=False, fresh=fresh)

    async def readiness(self) -> Readiness:
        """Ready = Redis answers now (the breaker is bypassed) and a committed generation is served."""
        try:
            await self.client.ping()
            generation = await self.client.get(self.store.pointer_key)
            meta = None if generation is None else await self._generation_meta(generation, refresh=True)
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc)
            return Readiness(False, None, f"Redis unavailable: {exc}")
        self._redis_answered()
        if generation is None and self._classic is not None:
            self._start_heal()
            return Readiness(
                False,
                None,
                f"Redis serves no feed generation (lost?); answering with generation {self._classic.generation}'s "
                "classic feed from memory (degraded) until it is republished (`ltvfeed feeds republish`)",
            )
        if generation is None:
            return Readiness(False, None, "no committed feed generation yet (publish one first)")
        if meta is None or meta.status != COMMITTED:
            status = "missing" if meta is None else meta.status
            return Readiness(False, generation, f"served generation {generation} has status {status}, not committed")
        return Readiness(True, generation, None)

    # ---- reading --------------------------------------------------------------------------------------------
    async def _read(
        self, user_id: str, variant: str | None = None
    ) -> tuple[Feed | None, str, str | None, list[bytes | None] | None]:
        """Like :meth:`FeedStore.read_feed`: resolve the generation pointer once, then read that generation's keys
        (old or new generation, never a mix). A new generation also refreshes the cached classic feed. Returns
        the personal feed (None: none) and which feed it is (see :meth:`_pick`), the generation (None: none
        served) and the freshness row when it was read here (see :meth:`_read_pipelined`)."""
        if self._row is not None:
            return await self._read_pipelined(user_id, variant)
        generation = await self.client.get(self.store.pointer_key)
        if generation is None:
            return None, PERSONALISED_FEED, None, None
        personal, served_as = None, PERSONALISED_FEED
        if user_id != CLASSIC_USER_ID:
            raws = await self.client.mget(self._personal_keys(generation, user_id, variant))
            personal, served_as = self._pick(raws, user_id, variant)
        if generation != self._classic_read_for:
            await self._refresh_generation(generation)
        return personal, served_as, generation, None

    async def _read_pipelined(
        self, user_id: str, variant: str | None
    ) -> tuple[Feed | None, str, str | None, list[bytes | None] | None]:
        """One round trip: the pointer, the feed keys in the generation last seen (right unless a swap happened
        since, then read again) and the user's freshness row."""
        assert self._raw_client is not None and self._row is not None
        guess = self._classic_read_for
        keys = [] if guess is None or user_id == CLASSIC_USER_ID else self._personal_keys(guess, user_id, variant)
        pipe = self._raw_client.pipeline(transaction=False)
        pipe.get(self.store.pointer_key)
        for key in keys:
            pipe.get(key)
        pipe.hmget(self._row.key(user_id), self._row.fields)
        replies = await pipe.execute()
        if replies[0] is None:
            return None, PERSONALISED_FEED, None, None
        generation = replies[0].decode()
        raws = replies[1 : 1 + len(keys)]
        if user_id != CLASSIC_USER_ID and generation != guess:
            raws = await self._raw_client.mget(self._personal_keys(generation, user_id, variant))
        personal, served_as = self._pick(raws, user_id, variant) if raws else (None, PERSONALISED_FEED)
        if generation != self._classic_read_for:
            await self._refresh_generation(generation)
        return personal, served_as, generation, replies[-1]

    def _personal_keys(self, generation: str, user_id: str, variant: str | None) -> list[str]:
        """The variant's key (when asked for) before the personalised one: read together, a generation without
        the variant costs no second read."""
        keys = [self.store.feed_key(generation, user_id)]
        return keys if variant is None else [self.store.feed_key(generation, user_id, variant), *keys]

    def _pick(self, raws: list, user_id: str, variant: str | None) -> tuple[Feed | None, str]:
        """The variant's feed when stored, else the personalised one; with the name of the one picked."""
        if variant is not None and raws[0] is not None:
            feed = self._decode(_text(raws[0]), user_id)
            if feed is not None:
                return feed, VARIANT_PREFIX + variant
        raw = raws[-1]
        return (None if raw is None else self._decode(_text(raw), user_id)), PERSONALISED_FEED

    @staticmethod
    def _decode(raw: str, user_id: str) -> Feed | None:
        try:
            return Feed.from_json(raw)
        except (UserError, ValueError, KeyError, TypeError):  # unreadable stored feed: the classic feed instead
            log.exception("unreadable stored feed for user %s; serving the classic feed", user_id)
            return None

    async def _refresh_generation(self, generation: str) -> None:
        """Once per generation seen: its metadata and classic feed (kept, so that the degraded answer is
        current); on a generation without a classic feed the last known one stays."""
        raw = await self.client.get(self.store.classic_key(generation))
        classic = None if raw is None else self._decode(raw, CLASSIC_USER_ID)
        await self._generation_meta(generation)
        if classic is not None:
            if self.classic_copy is not None and classic != self._classic:
                await anyio.to_thread.run_sync(write_classic_copy, self.classic_copy, classic)
            self._classic = classic
        self._classic_read_for = generation

    async def _generation_meta(self, generation: str, *, refresh: bool = False) -> GenerationMeta | None:
        """Metadata of a generation, read once (what is served from it does not change), or now if ``refresh``.
        Rare, so read through the store (its parsing) in a worker thread."""
        meta = None if refresh else self._meta.get(generation)
        if meta is None:
            meta = await anyio.to_thread.run_sync(self.store.generation_meta, generation)
            if meta is None:
                return None
            kept = [(g, m) for g, m in self._meta.items() if g != generation][-(_KEEP_META - 1) :]
            self._meta = dict(kept) | {generation: meta}
            if meta.status == COMMITTED:
                self.metrics.set_generation(generation, meta.generated_at)
        return meta

    async def _degraded(self, user_id: str, n: int) -> ServedFeed:
        classic = self._classic
        if classic is None:
            raise FeedUnavailable("Redis is unavailable and no classic feed has been cached yet")
        self.metrics.degraded.inc()
        return await self._serve(user_id, classic, n, personalised=False, degraded=True)

    async def _serve(
        self,
        user_id: str,
        feed: Feed,
        n: int,
        *,
        personalised: bool,
        degraded: bool,
        fresh: list[bytes | None] | None = None,
        served_as: str = CLASSIC_FEED,
    ) -> ServedFeed:
        meta = None if feed.generation is None else self._meta.get(feed.generation)
        generated_at = None if meta is None else meta.generated_at or None
        if degraded and self.freshness is not None:  # its online store is this Redis: do not wait on it too
            items, freshness = feed.items, FRESHNESS_UNAVAILABLE
        else:
            items, freshness = await self._apply_freshness(user_id, feed.items, data_cutoff(meta), fresh)
        return ServedFeed(
            user_id=user_id,
            items=tuple(items[:n]),
            generation=feed.generation,
            generated_at=generated_at,
            personalised=personalised,
            degraded=degraded,
            freshness=freshness,
            available=len(items),
            feed=served_as,
        )

    async def _apply_freshness(
        self, user_id: str, items: tuple[FeedItem, ...], since: datetime | None, fresh: list[bytes | None] | None
    ) -> tuple[tuple[FeedItem, ...], str]:
        if self.freshness is None:
            return items, FRESHNESS_OFF
        try:
            if fresh is not None:  # the row came with the feed: no second read, nothing to wait for
                return tuple(self.freshness.apply(items, fresh, since)), FRESHNESS_APPLIED
            async with asyncio.timeout(self.freshness_timeout_s):
                kept = await self.freshness(user_id, items, since)
            return tuple(kept), FRESHNESS_APPLIED
        except Exception as exc:  # any failure (or slowness) of the filter must not cost the user the feed
            log.warning("freshness filter failed for user %s (%r); serving the feed unfiltered", user_id, exc)
            self.metrics.freshness_failures.inc()
            return items, FRESHNESS_UNAVAILABLE

    # ---- self-heal ------------------------------------------------------------------------------------------
    def _start_heal(self) -> None:
        """Restore the lost generation in the background (never more than one attempt at a time, nor more often
        than every ``heal_interval_s``); requests go on being answered from memory meanwhile."""
        if self.heal is None or self.clock() < self._next_heal:
            return
        if self._heal_task is not None and not self._heal_task.done():
            return
        self._next_heal = self.clock() + self.heal_interval_s
        known = None if self._classic is None else self._classic.generation
        self._heal_task = asyncio.get_running_loop().create_task(self._run_heal(known))

    async def _run_heal(self, generation: str | None) -> None:
        try:
            restored = await anyio.to_thread.run_sync(self.heal, generation)
        except Exception:  # a failed attempt leaves the degraded answers; the next one comes after the interval
            log.exception("could not republish the lost feed generation %s", generation)
            return
        if restored is not None:
            self.metrics.republished.inc()

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

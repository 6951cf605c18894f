"""Feeds in Redis, written per *generation* and switched on atomically, so that readers never see a
half-written or mixed set of feeds.

Keys (``P`` = the configured prefix, ``G`` = a generation id)::

    P feed:current               -> G of the generation being served (one string, swapped in a MULTI)
    P feed:generations           -> list of committed generations kept, newest (= current) first
    P feed:gen:G:meta            -> hash: status, generated_at, model_versions, weights, config, shard:<i> = n,
                                    classic, expected_shards, n_users, committed_at
    P feed:G:<user_id>           -> the user's feed, compact JSON (:meth:`Feed.to_json`)
    P feed:G:__classic__         -> the classic (control arm) feed of that generation
    P feed:G:__variant__:V:<user_id> -> the user's feed of variant V (ranked with other weights, same run)

Variant feeds live under the generation's feed prefix, so whatever scans a generation's feeds (commit's
archive, expiry of old generations, discard, republish) handles them with the main ones. A shard is marked done
only once its users' feeds of every variant the generation began with are written too.

Life of a generation: :meth:`FeedStore.begin_generation` -> any number of workers call
:meth:`~FeedStore.write_shard` (pipelined SETs, then the shard's completion mark) and one calls
:meth:`~FeedStore.write_classic` -> :meth:`~FeedStore.commit_generation` checks that every expected shard and
the classic feed are there and, in one MULTI, marks it committed and points ``feed:current`` at it. The newest
``keep_generations`` committed generations are kept without expiry (current + rollback targets); older ones get
``superseded_ttl_s`` on all their keys: long compared with a read, so a reader that resolved the pointer just
before a swap still finds its keys. A reader resolves the pointer, then GETs the key: it sees the old or the
new generation, never a mix, and never an uncommitted one.

Given an ``archive_dir``, every committed generation is also copied there (:mod:`ltvfeed.serving.feed_archive`),
so that one lost from Redis can be put back with :meth:`FeedStore.restore_generation` without regenerating it.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from tqdm import tqdm

from ltvfeed.errors import UserError
from ltvfeed.frames.inputs import CLASSIC_USER_ID
from ltvfeed.redis_keys import glob_escape
from ltvfeed.serving.config import FeedConfig, ScoringWeights, check_variant_name
from ltvfeed.serving.feed import Feed

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)
_GENERATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_RESERVED = {"current", "gen", "generations"}
VARIANT_MARK = "__variant__"  # reserved user id prefix: a variant's feeds are keyed under it
OPEN, COMMITTED, SUPERSEDED, ROLLED_BACK = "open", "committed", "superseded", "rolled_back"


class GenerationError(UserError):
    """A generation id that is malformed, unknown, or in the wrong state for the operation."""


class IncompleteGeneration(UserError):
    """Commit refused: shards or the classic feed are missing, so serving it would serve a partial feed set."""


@dataclass(frozen=True)
class GenerationMeta:
    generation: str
    status: str
    generated_at: str
    model_versions: dict[str, str]
    config: dict[str, Any] | None
    weights: dict[str, float] | None
    extra: dict[str, Any]
    shards_done: dict[int, int]
    has_classic: bool
    expected_shards: int | None = None
    n_users: int | None = None
    committed_at: str | None = None
    variants: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> weights
    other: dict[str, str] = field(default_factory=dict)


def new_generation_id() -> str:
    """Sortable by creation time, unique across concurrent writers."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class FeedStore:
    """Writer and reader of feed generations under one key prefix."""

    def __init__(
        self,
        redis_url: str | redis.Redis,
        prefix: str,
        *,
        keep_generations: int = 2,
        superseded_ttl_s: int = 3600,
        write_batch_size: int = 2000,
        archive_dir: Path | None = None,
    ) -> None:
        """``redis_url``: a URL, or a client made with ``decode_responses=True`` (e.g. an in-process fakeredis).
        ``archive_dir``: where committed generations are copied (none when None)."""
        if keep_generations < 1:
            raise UserError(f"keep_generations must be >= 1 (the current generation), got {keep_generations}")
        if superseded_ttl_s < 1:
            raise UserError(f"superseded_ttl_s must be >= 1 second, got {superseded_ttl_s}")
        if write_batch_size < 1:
            raise UserError(f"write_batch_size must be >= 1, got {write_batch_size}")
        if isinstance(redis_url, str):
            self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        else:
            self.client = redis_url
        self.prefix = prefix
        self.archive_dir = archive_dir
        self.keep_generations = keep_generations
        self.superseded_ttl_s = superseded_ttl_s
        self.write_batch_size = write_batch_size
        self.pointer_key = f"{prefix}feed:current"
        self.history_key = f"{prefix}feed:generations"

    # ---- keys -----------------------------------------------------------------------------------------------
    def meta_key(self, generation: str) -> str:
        return f"{self.prefix}feed:gen:{generation}:meta"

    def feed_key(self, generation: str, user_id: str, variant: str | None = None) -> str:
        """The user's feed key; with ``variant``, that of the variant's feed."""
        scope = "" if variant is None else f"{VARIANT_MARK}:{variant}:"
        return f"{self.prefix}feed:{generation}:{scope}{user_id}"

    def classic_key(self, generation: str) -> str:
        return self.feed_key(generation, CLASSIC_USER_ID)

    @staticmethod
    def _check_id(generation: str) -> str:
        if not isinstance(generation, str) or not _GENERATION_ID.match(generation) or generation in _RESERVED:
            raise GenerationError(
                f"generation id {generation!r} is invalid: use 1-80 of A-Z a-z 0-9 _ . - (not {sorted(_RESERVED)})"
            )
        return generation

    def _require_open(self, generation: str) -> None:
        status = self.client.hget(self.meta_key(self._check_id(generation)), "status")
        if status is None:
            raise GenerationError(f"generation {generation} was never begun (begin_generation first)")
        if status != OPEN:
            raise GenerationError(f"generation {generation} is {status}; only an open generation can be written")

    # ---- writing --------------------------------------------------------------------------------------------
    def begin_generation(
        self,
        *,
        model_versions: dict[str, str] | None = None,
        config: FeedConfig | None = None,
        generation: str | None = None,
        extra: dict[str, Any] | None = None,
        variants: Mapping[str, ScoringWeights] | None = None,
    ) -> str:
        """Open a new generation (id generated unless given) and record what produces it; ``variants``: the
        further feeds (name -> weights) every shard must write."""
        generation = self._check_id(generation or new_generation_id())
        variants = {check_variant_name(name): asdict(weights) for name, weights in (variants or {}).items()}
        key = self.meta_key(generation)
        if not self.client.hsetnx(key, "status", OPEN):
            raise GenerationError(f"generation {generation} already exists")
        self.client.hset(
            key,
            mapping={
                "generated_at": _now(),
                "model_versions": json.dumps(model_versions or {}, sort_keys=True),
                "config": json.dumps(None if config is None else config.to_dict(), sort_keys=True),
                "weights": json.dumps(None if config is None else config.to_dict()["weights"], sort_keys=True),
                "extra": json.dumps(extra or {}, sort_keys=True, default=str),
                "variants": json.dumps(variants, sort_keys=True),
            },
        )
        return generation

    def write_shard(
        self, generation: str, shard: int, feeds: Iterable[Feed | tuple[str, Feed]], *, progress: bool = False
    ) -> int:
        """Write one shard's feeds (pipelined, ``write_batch_size`` per round trip), then mark the shard done.
        A ``(variant, feed)`` pair is the user's feed of that variant; each variant the generation began with
        must get one per user. Re-running a shard overwrites it (idempotent retries). Returns the number of
        users' (main) feeds written."""
        if isinstance(shard, bool) or not isinstance(shard, int) or shard < 0:
            raise UserError(f"shard must be an integer >= 0, got {shard!r}")
        self._require_open(generation)
        expected = self._variants(generation)
        counts = dict.fromkeys([None, *expected], 0)
        pipe = self.client.pipeline(transaction=False)
        for i, item in enumerate(tqdm(feeds, desc=f"shard {shard}", unit="feed", disable=not progress), 1):
            variant, feed = item if isinstance(item, tuple) else (None, item)
            if variant not in counts:
                raise UserError(f"variant {variant!r} is not one of generation {generation}'s: {sorted(expected)}")
            if feed.user_id == CLASSIC_USER_ID or feed.user_id.startswith(VARIANT_MARK):
                raise UserError(f"user id {feed.user_id} is reserved (classic feed: write_classic; variant feeds)")
            pipe.set(self.feed_key(generation, feed.user_id, variant), feed.with_generation(generation).to_json())
            counts[variant] += 1
            if i % self.write_batch_size == 0:
                pipe.execute()
        pipe.execute()
        written = counts.pop(None)
        short = {v: n for v, n in counts.items() if n != written}
        if short:
            raise IncompleteGeneration(f"shard {shard}: {written} user feeds but variant feeds {short}; not marked")
        # Only after every SET has succeeded: the mark is what commit_generation trusts.
        self.client.hset(self.meta_key(generation), f"shard:{shard}", written)
        return written

    def _variants(self, generation: str) -> list[str]:
        return list(json.loads(self.client.hget(self.meta_key(generation), "variants") or "{}"))

    def write_classic(self, generation: str, feed: Feed) -> None:
        """Store the generation's classic (control arm) feed, the same for every user."""
        self._require_open(generation)
        classic = Feed(CLASSIC_USER_ID, feed.items, generation)
        self.client.set(self.classic_key(generation), classic.to_json())
        self.client.hset(self.meta_key(generation), "classic", 1)

    def commit_generation(
        self, generation: str, expected_shards: int, *, require_classic: bool = True
    ) -> GenerationMeta:
        """Serve ``generation`` from now on, if shards ``0..expected_shards-1`` (and the classic feed) are all
        written; else raise :class:`IncompleteGeneration` and leave the current generation in place."""
        self._check_id(generation)
        if isinstance(expected_shards, bool) or not isinstance(expected_shards, int) or expected_shards < 1:
            raise UserError(f"expected_shards must be an integer >= 1, got {expected_shards!r}")
        meta_key = self.meta_key(generation)

        def swap(pipe: redis.client.Pipeline) -> None:
            meta = pipe.hgetall(meta_key)
            if not meta:
                raise GenerationError(f"generation {generation} was never begun")
            if meta["status"] != OPEN:
                raise GenerationError(f"generation {generation} is {meta['status']}; it cannot be committed again")
            done = {int(k.split(":", 1)[1]): int(v) for k, v in meta.items() if k.startswith("shard:")}
            missing = [s for s in range(expected_shards) if s not in done]
            unexpected = sorted(s for s in done if s >= expected_shards)
            problems = []
            if missing:
                problems.append(f"shard(s) {missing} not written")
            if unexpected:
                problems.append(f"shard(s) {unexpected} written but only {expected_shards} expected")
            if require_classic and "classic" not in meta:
                problems.append("classic feed not written")
            if problems:
                raise IncompleteGeneration(f"generation {generation} not committed: {'; '.join(problems)}")
            previous = pipe.get(self.pointer_key)
            pipe.multi()
            pipe.hset(
                meta_key,
                mapping={
                    "status": COMMITTED,
                    "committed_at": _now(),
                    "expected_shards": expected_shards,
                    "n_users": sum(done.values()),
                },
            )
            if previous and previous != generation:
                pipe.hset(self.meta_key(previous), "status", SUPERSEDED)
            pipe.set(self.pointer_key, generation)
            pipe.lpush(self.history_key, generation)

        self.client.transaction(swap, self.pointer_key, meta_key, self.history_key)
        if self.archive_dir is not None:  # before retiring: what is archived is what is served now
            from ltvfeed.serving.feed_archive import write_archive

            try:
                write_archive(self, generation, self.archive_dir, keep=self.keep_generations)
            except Exception:  # the generation is served already: a missing copy must not fail the commit
                log.exception("generation %s is served but could not be archived in %s", generation, self.archive_dir)
        self._retire(self.client.lrange(self.history_key, self.keep_generations, -1))
        meta = self.generation_meta(generation)
        assert meta is not None
        return meta

    def restore_generation(self, generation: str, meta: Mapping[str, str], feeds: Iterable[tuple[str, str]]) -> int:
        """Put a committed generation back (its metadata hash and ``(user_id, stored JSON)`` feeds, as archived)
        and serve it: feeds first (pipelined, without expiry), then in one MULTI its metadata marked committed,
        the pointer and the history; the generation served before, if another, is marked superseded. Idempotent.
        Returns the number of feeds written (the classic feed included)."""
        self._check_id(generation)
        if meta.get("status") not in (COMMITTED, SUPERSEDED, ROLLED_BACK):
            raise GenerationError(f"generation {generation} was never committed; only a committed one is restored")
        written = 0
        pipe = self.client.pipeline(transaction=False)
        for user_id, raw in feeds:
            pipe.set(self.feed_key(generation, user_id), raw)
            written += 1
            if written % self.write_batch_size == 0:
                pipe.execute()
        pipe.execute()
        meta_key = self.meta_key(generation)

        def serve(pipe: redis.client.Pipeline) -> None:
            previous = pipe.get(self.pointer_key)
            pipe.multi()
            pipe.delete(meta_key)  # also drops an expiry left from when it was superseded
            pipe.hset(meta_key, mapping={**meta, "status": COMMITTED, "restored_at": _now()})
            if previous and previous != generation:
                pipe.hset(self.meta_key(previous), "status", SUPERSEDED)
            pipe.set(self.pointer_key, generation)
            pipe.lrem(self.history_key, 0, generation)
            pipe.lpush(self.history_key, generation)

        self.client.transaction(serve, self.pointer_key, self.history_key)
        return written

    def rollback(self) -> str:
        """Serve the previous kept generation again; the current one is marked rolled back and expires."""

        def back(pipe: redis.client.Pipeline) -> str:
            history = pipe.lrange(self.history_key, 0, 1)
            if len(history) < 2:
                raise GenerationError("no earlier generation is kept to roll back to")
            current, target = history
            pipe.multi()
            pipe.set(self.pointer_key, target)
            pipe.lpop(self.history_key)
            pipe.hset(self.meta_key(current), "status", ROLLED_BACK)
            pipe.hset(self.meta_key(target), "status", COMMITTED)
            return current

        bad = self.client.transaction(back, self.pointer_key, self.history_key, value_from_callable=True)
        self._expire_generation(bad)
        return self.client.get(self.pointer_key)

    def discard_generation(self, generation: str) -> int:
        """Delete an abandoned (never committed) generation's keys; returns how many were deleted."""
        self._check_id(generation)
        if generation == self.client.get(self.pointer_key) or generation in self.committed_generations():
            raise GenerationError(f"generation {generation} is served or kept for rollback; it cannot be discarded")
        deleted = 0
        for chunk in self.generation_keys(generation):
            deleted += self.client.delete(*chunk)
        return deleted + self.client.delete(self.meta_key(generation))

    def generation_keys(self, generation: str) -> Iterable[list[str]]:
        """The generation's feed keys, in chunks (SCAN: never blocks the server)."""
        pattern = glob_escape(f"{self.prefix}feed:{generation}:") + "*"
        chunk: list[str] = []
        for key in self.client.scan_iter(match=pattern, count=1000):
            chunk.append(key)
            if len(chunk) >= self.write_batch_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _expire_generation(self, generation: str) -> None:
        for chunk in self.generation_keys(generation):
            pipe = self.client.pipeline(transaction=False)
            for key in chunk:
                pipe.expire(key, self.superseded_ttl_s)
            pipe.execute()
        self.client.expire(self.meta_key(generation), self.superseded_ttl_s)

    def _retire(self, generations: Sequence[str]) -> None:
        for generation in generations:
            self._expire_generation(generation)
            self.client.lrem(self.history_key, 0, generation)

    # ---- reading --------------------------------------------------------------------------------------------
    def current_generation(self) -> str | None:
        return self.client.get(self.pointer_key)

    def committed_generations(self) -> list[str]:
        """Kept committed generations, newest (served) first."""
        return self.client.lrange(self.history_key, 0, -1)

    def read_feed(self, user_id: str, variant: str | None = None) -> Feed | None:
        """The user's feed (of ``variant``, if given) from the served generation; None before any commit or for
        a user without one."""
        generation = self.client.get(self.pointer_key)
        if generation is None:
            return None
        raw = self.client.get(self.feed_key(generation, user_id, variant))
        return None if raw is None else Feed.from_json(raw)

    def read_feeds(self, user_ids: Sequence[str]) -> dict[str, Feed | None]:
        """Several users' feeds, all from the same generation (one pointer read, one MGET)."""
        generation = self.client.get(self.pointer_key)
        if generation is None or not user_ids:
            return dict.fromkeys(user_ids)
        raws = self.client.mget([self.feed_key(generation, u) for u in user_ids])
        return {u: None if raw is None else Feed.from_json(raw) for u, raw in zip(user_ids, raws, strict=True)}

    def read_classic(self) -> Feed | None:
        """The served generation's classic (control arm) feed."""
        generation = self.client.get(self.pointer_key)
        if generation is None:
            return None
        raw = self.client.get(self.classic_key(generation))
        return None if raw is None else Feed.from_json(raw)

    def generation_meta(self, generation: str) -> GenerationMeta | None:
        raw = self.client.hgetall(self.meta_key(self._check_id(generation)))
        if not raw:
            return None
        raw = dict(raw)
        shards = {int(k.split(":", 1)[1]): int(raw.pop(k)) for k in list(raw) if k.startswith("shard:")}
        expected = raw.pop("expected_shards", None)
        n_users = raw.pop("n_users", None)
        return GenerationMeta(
            generation=generation,
            status=raw.pop("status"),
            generated_at=raw.pop("generated_at", ""),
            model_versions=json.loads(raw.pop("model_versions", "{}")),
            config=json.loads(raw.pop("config", "null")),
            weights=json.loads(raw.pop("weights", "null")),
            extra=json.loads(raw.pop("extra", "{}")),
            variants=json.loads(raw.pop("variants", "{}")),
            shards_done=shards,
            has_classic=raw.pop("classic", None) is not None,
            expected_shards=None if expected is None else int(expected),
            n_users=None if n_users is None else int(n_users),
            committed_at=raw.pop("committed_at", None),
            other=raw,
        )

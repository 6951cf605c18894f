"""Durable copies of committed feed generations. Redis holds the served feeds; when it loses them (restarted
without persistence, flushed, failed over to an empty replica) a generation is put back from its copy with
``ltvfeed feeds republish`` - or by the feed API itself (see :mod:`ltvfeed.serving.feed_service`) - in seconds,
instead of a full regeneration.

One Parquet file per generation, ``<state dir>/feeds/<prefix>/<generation>.parquet``: columns ``user_id`` and
``feed`` (the stored JSON, byte for byte, the classic feed under its reserved id), the generation's metadata hash
in the file's key-value metadata. :meth:`FeedStore.commit_generation` writes it right after the swap, from what
Redis then holds (exactly what is served), atomically (temporary file, then rename); the newest ``keep`` are kept.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from ltvfeed.errors import UserError

if TYPE_CHECKING:
    from ltvfeed.serving.feed_store import FeedStore

log = logging.getLogger(__name__)

_META = b"ltvfeed.generation_meta"
_SUFFIX = ".parquet"
_LOCK_TTL_S = 300


def feed_archive_dir(state_dir: Path, redis_prefix: str) -> Path:
    """Where a project's (key prefix's) generations are archived."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in redis_prefix) or "default"
    return state_dir / "feeds" / safe


def archive_path(directory: Path, generation: str) -> Path:
    return directory / f"{generation}{_SUFFIX}"


def archived_generations(directory: Path) -> list[str]:
    """Archived generation ids, oldest first (ids sort by creation time; files by modification time)."""
    if not directory.is_dir():
        return []
    files = sorted(directory.glob(f"*{_SUFFIX}"), key=lambda p: (p.stat().st_mtime, p.name))
    return [p.name.removesuffix(_SUFFIX) for p in files if not p.name.startswith(".")]


def write_archive(store: FeedStore, generation: str, directory: Path, *, keep: int) -> Path:
    """Copy ``generation`` (metadata and every feed key) from Redis to its file; prune to the newest ``keep``."""
    meta = store.client.hgetall(store.meta_key(generation))
    if not meta:
        raise UserError(f"generation {generation} has no metadata in Redis: nothing to archive")
    head = store.feed_key(generation, "")
    users: list[str] = []
    feeds: list[str] = []
    for chunk in store.generation_keys(generation):
        for key, raw in zip(chunk, store.client.mget(chunk), strict=True):
            if raw is not None:
                users.append(key[len(head) :])
                feeds.append(raw)
    table = pa.table({"user_id": pa.array(users, pa.string()), "feed": pa.array(feeds, pa.string())})
    table = table.replace_schema_metadata({_META: json.dumps(meta, sort_keys=True)})
    directory.mkdir(parents=True, exist_ok=True)
    path = archive_path(directory, generation)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, partial, compression="zstd")
    os.replace(partial, path)
    for old in archived_generations(directory)[:-keep]:
        archive_path(directory, old).unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class Archive:
    generation: str
    meta: dict[str, str]
    path: Path
    n_feeds: int

    def feeds(self) -> Iterator[tuple[str, str]]:
        """``(user_id, stored JSON)``, streamed in batches."""
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=5000, columns=["user_id", "feed"]):
            yield from zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True)


def read_archive(directory: Path, generation: str | None = None) -> Archive:
    """The archive of ``generation``, else of the newest archived one; a clear error when there is none."""
    if generation is None:
        known = archived_generations(directory)
        if not known:
            raise UserError(f"no archived feed generation under {directory} (none committed with this state dir)")
        generation = known[-1]
    path = archive_path(directory, generation)
    try:
        parquet = pq.ParquetFile(path)
        meta = json.loads(parquet.schema_arrow.metadata[_META])
    except FileNotFoundError:
        raise UserError(
            f"generation {generation} is not archived under {directory} "
            f"(archived: {', '.join(archived_generations(directory)) or 'none'})"
        ) from None
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException) as exc:
        raise UserError(f"the archive {path} cannot be read ({exc}); republish another generation") from exc
    return Archive(generation, meta, path, parquet.metadata.num_rows)


def republish(store: FeedStore, directory: Path, generation: str | None = None) -> Archive:
    """Restore an archived generation into Redis and serve it (see :meth:`FeedStore.restore_generation`)."""
    archive = read_archive(directory, generation)
    written = store.restore_generation(archive.generation, archive.meta, archive.feeds())
    if written != archive.n_feeds:
        raise UserError(f"republished {written} of {archive.n_feeds} feeds of {archive.generation} from {archive.path}")
    return archive


def republish_if_lost(store: FeedStore, directory: Path, generation: str | None) -> str | None:
    """What the API's self-heal runs: when Redis serves no generation, restore ``generation`` (the last one the
    API served; else the newest archived). One process at a time (a lock key with an expiry); returns the
    generation restored, None when nothing needed or could be done."""
    if store.current_generation() is not None:
        return None
    if generation is not None and generation not in archived_generations(directory):
        generation = None
    if not archived_generations(directory):
        return None
    lock = f"{store.prefix}feed:republish:lock"
    if not store.client.set(lock, os.getpid(), nx=True, ex=_LOCK_TTL_S):
        return None
    try:
        if store.current_generation() is not None:  # another process was quicker
            return None
        archive = republish(store, directory, generation)
        log.warning("Redis had no served feed generation: republished %s from %s", archive.generation, archive.path)
        return archive.generation
    finally:
        store.client.delete(lock)

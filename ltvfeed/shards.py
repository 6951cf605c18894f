"""Which shard a user belongs to: a stable hash of the user id, the same in Python and in PostgreSQL.

Why md5 and not Python's ``hash`` or PostgreSQL's ``hashtext``: both of those may change between processes or
server versions, and a user must land in the same shard in every worker, every run and every tool, so that
each shard's task can select its own users in SQL and a rerun of one shard rewrites exactly the same users.
The first 32 bits of md5(user_id) (hex) modulo the number of shards does this on both sides:

    Python:      int(md5(user_id).hexdigest()[:8], 16) % shards
    PostgreSQL:  mod(('x' || substr(md5(user_id), 1, 8))::bit(32)::bigint, shards)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from ltvfeed.errors import UserError

MAX_SHARDS = 1024


def check_shards(shards: int) -> int:
    """A valid shard count (1..MAX_SHARDS), else a UserError naming the value."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise UserError(f"the number of shards must be an integer between 1 and {MAX_SHARDS}, got {shards!r}")
    return shards


def check_shard(shard: int, shards: int) -> int:
    """A valid shard number for ``shards`` shards (0..shards-1)."""
    check_shards(shards)
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shards:
        raise UserError(f"shard must be an integer between 0 and {shards - 1} (of {shards} shards), got {shard!r}")
    return shard


def user_hash(user_id: str) -> int:
    """The 32-bit hash the shard assignment uses (see module docstring)."""
    return int(hashlib.md5(str(user_id).encode("utf-8"), usedforsecurity=False).hexdigest()[:8], 16)


def shard_of(user_ids: Iterable[str], shards: int) -> np.ndarray:
    """Shard number (0..shards-1) of each user id, in order."""
    check_shards(shards)
    return np.fromiter((user_hash(u) for u in user_ids), dtype=np.int64) % shards


def shard_sql(column: str = "user_id") -> str:
    """SQL expression of the 32-bit hash of ``column`` (a trusted column name, never user input); compare
    ``mod(<expr>, shards)`` with the shard number, exactly as :func:`shard_of` does."""
    if not column.replace("_", "").replace(".", "").isalnum():
        raise UserError(f"not a column name: {column!r}")
    return f"('x' || substr(md5({column}), 1, 8))::bit(32)::bigint"

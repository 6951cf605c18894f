"""Per-partner rate limit in Redis: events per one-second window, shared by every collector process.

A fixed window (one counter per partner and second, ``INCRBY`` + ``EXPIRE`` in one pipeline) costs one round
trip per request. When Redis is unreachable the limiter fails open (events accepted unthrottled: ingestion
never stops because of the cache) or closed (503), as configured; either way it says so in the log once.
"""

from __future__ import annotations

import logging
import math
import time

import redis.asyncio as aredis

log = logging.getLogger(__name__)


class RateLimited(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class RateLimiter:
    def __init__(self, client: aredis.Redis, prefix: str, default_per_s: int, fail_open: bool = True) -> None:
        self._client, self._prefix = client, prefix
        self._default, self._fail_open = default_per_s, fail_open
        self._warned = False

    async def check(self, partner_id: str, events: int, limit_per_s: int | None = None) -> None:
        """Count ``events`` against the partner's current second; raises RateLimited (429, or 503 when Redis is
        down and the limiter fails closed)."""
        limit = limit_per_s or self._default
        now = time.time()
        key = f"{self._prefix}collector:rate:{partner_id}:{int(now)}"
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.incrby(key, events)
                pipe.expire(key, 2)
                count, _ = await pipe.execute()
        except (aredis.RedisError, OSError) as exc:
            if not self._warned:
                log.warning(
                    "collector: rate limit store unavailable (%s); failing %s",
                    exc,
                    "open" if self._fail_open else "closed",
                )
                self._warned = True
            if self._fail_open:
                return
            raise RateLimited(503, "rate limit store unavailable; retry", {"Retry-After": "1"}) from exc
        self._warned = False
        if count > limit and count - events > 0:
            retry = max(1, math.ceil(int(now) + 1 - now))
            raise RateLimited(
                429, f"rate limit of {limit} events/s exceeded for partner {partner_id}", {"Retry-After": str(retry)}
            )

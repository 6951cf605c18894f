"""The seam for request-time freshness: dropping feed items that stopped being relevant after the feed
generation was written (e.g. bought since), read online at request time.

Only the protocol lives here. The implementation (Feast online features from Redis) comes with the feature
store; until then the API runs without one and says so in every response (``"freshness": "off"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from ltvfeed.serving.feed import FeedItem


@runtime_checkable
class FreshnessFilter(Protocol):
    """Called once per feed request, on the whole stored feed, *before* it is truncated to the ``n`` asked for
    (so dropped items are replaced by the next ones).

    ``since`` is when the served generation was generated (None if unknown): events after it are what the stored
    feed could not know. Return the items to keep, in the order given (a filter drops, it does not re-rank).
    A coroutine, because it runs on the API's event loop (Feast has ``get_online_features_async`` for Redis); a
    blocking implementation must hand its work to a thread. It should bound its own latency and raise on failure;
    the API also cancels it after ``ApiOptions.freshness_timeout_s``. Either way the API then serves the
    unfiltered feed, flagged ``"freshness": "unavailable"``, and counts the failure.
    """

    async def __call__(self, user_id: str, items: Sequence[FeedItem], since: datetime | None) -> Sequence[FeedItem]: ...

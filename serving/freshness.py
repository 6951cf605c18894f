"""Request-time freshness: dropping feed items that stopped being relevant after the served generation's data
cutoff - items the user bought since - read online at request time.

The :class:`FreshnessFilter` protocol is the API's seam; :class:`FeastFreshnessFilter` implements it over the
Feast view ``user_recent_purchases`` in Redis (kept current between snapshots by pushes, see
:mod:`ltvfeed.features.recent_purchases`). The rule is the generator's own exclusion applied to purchases it
could not see: an item bought at or after ``since`` is dropped unless it is a repeat-purchase item (feed
generation keeps those after a purchase too, see :mod:`ltvfeed.serving.candidates`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ltvfeed.errors import UserError
from ltvfeed.features.recent_purchases import FEATURES, ITEM_IDS, REPEATABLE, SERVICE, TIMES
from ltvfeed.serving.feed import FeedItem

if TYPE_CHECKING:
    from feast import FeatureStore

    from ltvfeed.infra.stack import Stack

log = logging.getLogger(__name__)


@runtime_checkable
class FreshnessFilter(Protocol):
    """Called once per feed request, on the whole stored feed, *before* it is truncated to the ``n`` asked for
    (so dropped items are replaced by the next ones).

    ``since`` is the served generation's data cutoff (its as_of 00:00 UTC; when unknown, when it was generated;
    None if neither is known): events at or after it are what the stored feed could not know. Return the items
    to keep, in the order given (a filter drops, it does not re-rank).
    A coroutine, because it runs on the API's event loop (Feast has ``get_online_features_async`` for Redis); a
    blocking implementation must hand its work to a thread. It should bound its own latency and raise on failure;
    the API also cancels it after ``ApiOptions.freshness_timeout_s``. Either way the API then serves the
    unfiltered feed, flagged ``"freshness": "unavailable"``, and counts the failure.
    """

    async def __call__(self, user_id: str, items: Sequence[FeedItem], since: datetime | None) -> Sequence[FeedItem]: ...


class FreshnessNotApplied(UserError):
    """The feature store has no ``freshness`` service (``ltvfeed features apply`` not run on this stack)."""


@dataclass(frozen=True)
class RecentPurchases:
    """A user's recent purchases as stored online: aligned item ids, purchase times (epoch seconds, floored) and
    repeat-purchase flags."""

    item_ids: Sequence[str]
    times: Sequence[int]
    repeatable: Sequence[bool]

    def __post_init__(self) -> None:
        if not len(self.item_ids) == len(self.times) == len(self.repeatable):
            raise ValueError(
                f"recent purchases are not aligned: {len(self.item_ids)} items, {len(self.times)} times, "
                f"{len(self.repeatable)} flags"
            )

    @classmethod
    def from_online(cls, values: dict[str, list[Any]], row: int = 0) -> RecentPurchases:
        """From Feast's ``OnlineResponse.to_dict()``; a user without a stored row has no recent purchases."""
        return cls(*(values[name][row] or () for name in (ITEM_IDS, TIMES, REPEATABLE)))

    def bought_since(self, since: datetime | None) -> frozenset[str]:
        """One-off items bought at or after ``since`` (every recent one when None): what the feed must drop.
        Times are floored to seconds, so a purchase in the second before ``since`` counts as before it."""
        cutoff = None if since is None else (since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp()
        return frozenset(
            item
            for item, at, repeatable in zip(self.item_ids, self.times, self.repeatable, strict=True)
            if not repeatable and (cutoff is None or at >= cutoff)
        )


def drop_bought(items: Sequence[FeedItem], bought: frozenset[str]) -> Sequence[FeedItem]:
    """``items`` without the ``bought`` ones, order kept (the same sequence when nothing is dropped)."""
    return [it for it in items if it.item_id not in bought] if bought else items


class OnlineRow:
    """Where and how Feast's Redis online store keeps a user's ``user_recent_purchases`` row: key = serialized
    entity key + project, one hash field per feature (murmur3 of ``view:feature``), values ``ValueProto``. Lets
    the feed API read the row in the same pipelined round trip as the feed (one HMGET) instead of a second call
    through Feast (about as much CPU as the rest of the request). Built from Feast's own helpers, and checked
    against ``get_online_features`` by a test, so a layout change in Feast fails that test."""

    def __init__(self, project: str, view: str, serialization_version: int) -> None:
        from feast.infra.online_stores.helpers import _mmh3

        self.project = project
        self.serialization_version = serialization_version
        self.fields = [_mmh3(f"{view}:{name}") for name in FEATURES]

    def key(self, user_id: str) -> bytes:
        from feast.infra.online_stores.helpers import _redis_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        entity = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user_id)])
        return _redis_key(self.project, entity, entity_key_serialization_version=self.serialization_version)

    @staticmethod
    def decode(values: Sequence[bytes | None]) -> RecentPurchases:
        """The HMGET answer (in :data:`FEATURES` order); no row = no recent purchases."""
        from feast.protos.feast.types.Value_pb2 import Value

        lists = []
        for raw in values:
            value = Value.FromString(raw) if raw else Value()
            kind = value.WhichOneof("val")
            lists.append(list(getattr(value, kind).val) if kind and kind.endswith("_list_val") else [])
        return RecentPurchases(*lists)


class FeastFreshnessFilter:
    """The freshness filter over Feast's online store: one async read of the user's ``user_recent_purchases``
    row per request. Feature references are resolved once, at construction (registry reads cost milliseconds).
    ``row`` (set when the online store is the feed's Redis) lets the feed API read the row itself, pipelined with
    the feed, and call :meth:`apply`; otherwise it calls the filter, which reads through Feast."""

    def __init__(self, store: FeatureStore, refs: Sequence[str], row: OnlineRow | None = None) -> None:
        names = {ref.split(":", 1)[-1] for ref in refs}
        missing = [f for f in FEATURES if f not in names]
        if missing:
            raise UserError(f"freshness filter: feature references {list(refs)} lack {missing}")
        self.store = store
        self.refs = list(refs)
        self.row = row

    @staticmethod
    def apply(items: Sequence[FeedItem], values: Sequence[bytes | None], since: datetime | None) -> Sequence[FeedItem]:
        """The filter on a row read directly (see :class:`OnlineRow`)."""
        return drop_bought(items, OnlineRow.decode(values).bought_since(since))

    @classmethod
    def open(cls, stack: Stack) -> FeastFreshnessFilter:
        """On ``stack``'s feature store, reading the ``freshness`` service; raises :class:`FreshnessNotApplied`
        when it is not registered. The registry is read once and cached for good (TTL 0): a reload would block
        the event loop for milliseconds, and the references are resolved once anyway - restart the API after
        re-applying changed definitions."""
        from feast.errors import FeatureServiceNotFoundException

        from ltvfeed.features.config import feature_store

        store = feature_store(stack)
        store.config.registry.cache_ttl_seconds = 0  # before first use: the registry is created lazily
        try:
            service = store.get_feature_service(SERVICE, allow_cache=True)
        except FeatureServiceNotFoundException as exc:
            raise FreshnessNotApplied(
                f"feature service {SERVICE!r} is not registered (run `ltvfeed features apply`)"
            ) from exc
        refs = [f"{p.name_to_use()}:{f.name}" for p in service.feature_view_projections for f in p.features]
        views = {ref.split(":", 1)[0] for ref in refs if ref.split(":", 1)[-1] in FEATURES}
        row = None
        if store.config.online_store.type == "redis" and len(views) == 1:
            version = store.config.entity_key_serialization_version
            row = OnlineRow(store.config.project, views.pop(), version)
        return cls(store, refs, row)

    async def __call__(self, user_id: str, items: Sequence[FeedItem], since: datetime | None) -> Sequence[FeedItem]:
        if not items:
            return items
        response = await self.store.get_online_features_async(features=self.refs, entity_rows=[{"user_id": user_id}])
        return drop_bought(items, RecentPurchases.from_online(response.to_dict()).bought_since(since))


def open_freshness(stack: Stack, *, enabled: bool = True) -> tuple[FreshnessFilter | None, str]:
    """The API's filter and a line saying what it is: None when turned off or when the feature store cannot
    provide one (not applied, unreachable registry) - the API then serves unfiltered feeds, flagged "off"."""
    if not enabled:
        return None, "freshness filter off (api_freshness setting)"
    try:
        return FeastFreshnessFilter.open(stack), f"freshness filter on (Feast service {SERVICE!r})"
    except Exception as exc:  # any reason Feast cannot serve must leave the API up, without the filter
        log.warning("freshness filter unavailable: %s", exc)
        return None, f"freshness filter off: {exc}"

"""Loading snapshots from the marts into Redis.

Feast's own ``materialize_incremental`` starts a view's first window at *now* - TTL, so a first run for a past
cutoff (a backfill, a test on old data) loads nothing. Here the window is anchored on ``end``: from the view's
last materialised end, or ``end`` - TTL the first time. Windows are inclusive and only each entity's newest
snapshot in them goes online; Redis keeps a newer snapshot over an older one, so an older window never
overwrites newer values. Materialisations of one project run one at a time (:func:`registry_lock`): each appends
its window to the views' intervals in the registry, and the window of an incremental one starts where the last
ended, so two at once would lose an interval and load the same window twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ltvfeed.errors import UserError
from ltvfeed.features.config import feature_store, registry_lock

if TYPE_CHECKING:
    from feast import FeatureStore

    from ltvfeed.infra.stack import Stack


@dataclass(frozen=True)
class Window:
    view: str
    start: datetime | None  # None: skipped, the view is already materialised past ``end``
    end: datetime


def aware(moment: datetime, name: str) -> datetime:
    """A UTC-aware datetime; naive ones are taken as UTC (the marts' timestamps are UTC)."""
    if not isinstance(moment, datetime):
        raise UserError(f"{name} must be a datetime, got {moment!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _views(store: FeatureStore, names: list[str] | None) -> list:
    views = [v for v in store.list_feature_views() if v.online]
    if names is not None:
        unknown = sorted(set(names) - {v.name for v in views})
        if unknown:
            raise UserError(f"unknown feature view(s) {unknown}; known: {sorted(v.name for v in views)}")
        views = [v for v in views if v.name in names]
    if not views:
        raise UserError("no feature views registered; run `ltvfeed features apply` first")
    return views


def materialize(
    stack: Stack,
    start: datetime,
    end: datetime,
    *,
    views: list[str] | None = None,
    store: FeatureStore | None = None,
) -> list[Window]:
    """Load each entity's newest snapshot with start <= feature_timestamp <= end into the online store."""
    start, end = aware(start, "start"), aware(end, "end")
    if start > end:
        raise UserError(f"start {start.isoformat()} is after end {end.isoformat()}")
    store = store or feature_store(stack)
    with registry_lock(stack, store.project):
        chosen = _views(store, views)
        store.materialize(start_date=start, end_date=end, feature_views=[v.name for v in chosen])
    return [Window(v.name, start, end) for v in chosen]


def materialize_incremental(
    stack: Stack, end: datetime, *, views: list[str] | None = None, store: FeatureStore | None = None
) -> list[Window]:
    """Load what each view gained since its last materialisation, up to ``end`` (see the module doc)."""
    end = aware(end, "end")
    store = store or feature_store(stack)
    with registry_lock(stack, store.project):
        return _materialize_incremental(store, end, views)


def _materialize_incremental(store: FeatureStore, end: datetime, views: list[str] | None) -> list[Window]:
    by_start: dict[datetime, list[str]] = {}
    windows = []
    for view in _views(store, views):
        last = view.most_recent_end_time
        if last is None and not view.ttl:
            raise UserError(f"feature view {view.name} has no TTL and was never materialised; use materialize()")
        start = aware(last, "last end") if last is not None else end - view.ttl
        if start > end:
            windows.append(Window(view.name, None, end))
            continue
        by_start.setdefault(start, []).append(view.name)
        windows.append(Window(view.name, start, end))
    for start, names in sorted(by_start.items()):
        store.materialize(start_date=start, end_date=end, feature_views=names)
    return windows


def clear_online(stack: Stack, *, store: FeatureStore | None = None) -> None:
    """Delete this project's features from Redis (registry and marts stay; materialise to refill). Tests use
    it to leave no keys behind."""
    store = store or feature_store(stack)
    store._get_provider().teardown_infra(store.project, store.list_feature_views(), store.list_entities())

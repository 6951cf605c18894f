"""Each customer's recent purchases, kept current online between the daily snapshots: the write side of the
feed API's freshness filter (:mod:`ltvfeed.serving.freshness` is the read side).

The Feast view ``user_recent_purchases`` (service ``freshness``) holds per user the distinct items bought in the
last :data:`RECENT_PURCHASE_DAYS` days, newest first, as three aligned arrays. Daily snapshots come from the dbt
mart ``marts.user_recent_purchases``; orders arriving in between reach Redis through the view's push source. A
push replaces the user's whole row, so :func:`push_recent_purchases` recomputes each user's complete list from the
raw orders (the mart's logic, anchored at now instead of a cutoff) and stamps it with the time it was computed:
newer than the day's snapshot, so it wins over it, and older than the next snapshot, which includes those orders.

Callers: ``ltvfeed import`` / ``import-dir`` after loading orders or order lines (:func:`push_imported_purchases`),
and the event collector (:mod:`ltvfeed.collector.realtime`), which knows its users and calls
:func:`push_recent_purchases` directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.warehouse.activity_reads import recent_purchases, users_in_order_batches

if TYPE_CHECKING:
    import psycopg
    from feast import FeatureStore

    from ltvfeed.infra.stack import Stack
    from ltvfeed.ingest.report import ImportReport

VIEW = "user_recent_purchases"
PUSH_SOURCE = "user_recent_purchases_push"
SERVICE = "freshness"
ITEM_IDS, TIMES, REPEATABLE = "recent_purchase_item_ids", "recent_purchase_times", "recent_purchase_repeatable"
FEATURES = (ITEM_IDS, TIMES, REPEATABLE)
RECENT_PURCHASE_DAYS = 30  # the mart's dbt var recent_purchase_days (a test keeps them equal)
PURCHASE_KINDS = frozenset({"orders", "order_items"})  # imports that can change a recent-purchase list
_PUSH_BATCH = 5_000  # users per push: bounds memory and the size of one Redis pipeline


class FeatureStoreNotApplied(UserError):
    """The push source is not registered on this stack: ``ltvfeed features apply`` has not run yet."""


def window_start(now: datetime) -> datetime:
    """Oldest purchase time a list computed at ``now`` keeps."""
    return now - timedelta(days=RECENT_PURCHASE_DAYS)


def user_id_list(user_ids: Iterable[str]) -> list[str]:
    """Distinct user ids in first-seen order; a single string or an empty id is a caller's mistake."""
    if isinstance(user_ids, str | bytes):
        raise UserError(f"give a list of user ids, not the single string {user_ids!r}")
    users = list(dict.fromkeys(str(u) for u in user_ids))
    if any(not u.strip() for u in users):
        raise UserError("user ids must be non-empty")
    return users


def recent_purchase_frame(conn: psycopg.Connection, user_ids: Iterable[str], *, now: datetime) -> pd.DataFrame:
    """What a push writes: one row per distinct user (first-seen order) with the user's complete list as of
    ``now`` (empty lists without recent purchases) and ``feature_timestamp`` = ``now``."""
    if now.tzinfo is None:
        raise UserError(f"now must be timezone-aware, got {now!r}")
    users = user_id_list(user_ids)
    lists: dict[str, tuple[list[str], list[int], list[bool]]] = {u: ([], [], []) for u in users}
    rows = recent_purchases(conn, users, window_start(now)) if users else []
    for user, item, purchased_at, repeatable in rows:
        ids, times, flags = lists[user]
        ids.append(item)
        times.append(math.floor(purchased_at.timestamp()))  # as the mart: floor of the epoch seconds
        flags.append(bool(repeatable))
    return pd.DataFrame(
        {
            "user_id": users,
            "feature_timestamp": pd.Series([now] * len(users), dtype="datetime64[us, UTC]"),
            ITEM_IDS: [lists[u][0] for u in users],
            TIMES: [lists[u][1] for u in users],
            REPEATABLE: [lists[u][2] for u in users],
        }
    )


def push_recent_purchases(stack: Stack, user_ids: Iterable[str], *, store: FeatureStore | None = None) -> int:
    """Recompute the complete recent-purchase lists of ``user_ids`` from the warehouse and push them to the online
    store; returns the number of users pushed. Call it after the orders are committed: the push is stamped with
    the time taken before reading them, so a later push (or snapshot) always has seen at least as much."""
    return push_online(stack, PUSH_SOURCE, user_ids, recent_purchase_frame, store=store)


def push_online(
    stack: Stack,
    push_source: str,
    user_ids: Iterable[str],
    frame: Callable[..., pd.DataFrame],
    *,
    store: FeatureStore | None = None,
) -> int:
    """Push ``frame(conn, users, now=...)`` (whole rows, recomputed from the warehouse at ``now``) for ``user_ids``
    through ``push_source`` to the online store, in batches; returns the number of users pushed."""
    from feast.data_source import PushMode
    from feast.errors import DataSourceObjectNotFoundException, PushSourceNotFoundException

    from ltvfeed.db import connect
    from ltvfeed.features.config import feature_store

    users = user_id_list(user_ids)
    if not users:
        return 0
    store = store or feature_store(stack)
    missing = FeatureStoreNotApplied(
        f"the feature store has no push source {push_source!r} yet (run `ltvfeed features apply`)"
    )
    try:  # before reading the warehouse: nothing to compute for a store that cannot take it
        store.get_data_source(push_source)
    except DataSourceObjectNotFoundException as exc:
        raise missing from exc
    for start in range(0, len(users), _PUSH_BATCH):
        now = datetime.now(UTC)
        with connect(stack.warehouse_dsn) as conn:
            rows = frame(conn, users[start : start + _PUSH_BATCH], now=now)
        try:
            store.push(push_source, rows, to=PushMode.ONLINE)
        except PushSourceNotFoundException as exc:
            raise missing from exc
    return len(users)


def users_with_recent_orders(conn: psycopg.Connection, batch_ids: Iterable[int], *, now: datetime) -> list[str]:
    """Users with an order in the recent window among the orders or order lines of these import batches."""
    batches = sorted({int(b) for b in batch_ids})
    if not batches:
        return []
    return users_in_order_batches(conn, batches, window_start(now))


def push_imported_purchases(stack: Stack, reports: Iterable[ImportReport], *, store: FeatureStore | None = None) -> int:
    """After an import: push the lists of every user with a recent order in the reports' order or order-line
    batches; returns the number of users pushed. Files imported before count too (their earlier batch), so
    re-running an import pushes again. Nothing recent (a history backfill) touches no feature store."""
    from ltvfeed.db import connect

    batches = [r.batch_id for r in reports if r.kind in PURCHASE_KINDS]
    with connect(stack.warehouse_dsn) as conn:
        users = users_with_recent_orders(conn, batches, now=datetime.now(UTC))
    return push_recent_purchases(stack, users, store=store) if users else 0

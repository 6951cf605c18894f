"""What a user is doing right now, online within seconds of the collector storing it: the short-window engagement
and the current preferences apps read with ``get_online_features`` (service ``live_activity``).

The daily snapshots (``user_engagement``, ``user_preferences``) count whole days before a cutoff; this view counts
the last :data:`LIVE_WINDOW` and holds the current state of the preferences, so an app can react to a session in
progress (a user who just viewed three teapots, or wish-listed one). It has no snapshot: the collector pushes it
(PushMode.ONLINE) after each commit, and a push replaces the user's whole row, so :func:`live_activity_frame`
recomputes it from the raw tables, anchored at the time it is computed, like
:mod:`ltvfeed.features.recent_purchases`.

Row per user: per category (``live_categories``, most engaged first) the views, clicks and add-to-carts of the
last hour as aligned arrays; the :data:`LAST_VIEWED` most recently viewed distinct items of the last hour; and the
current wishlist, saved items and profile categories.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.features.recent_purchases import push_online, user_id_list
from ltvfeed.warehouse.activity_reads import category_counts, last_viewed, preferences

if TYPE_CHECKING:
    import psycopg
    from feast import FeatureStore

    from ltvfeed.infra.stack import Stack

VIEW = "user_live_activity"
PUSH_SOURCE = "user_live_activity_push"
SERVICE = "live_activity"
LIVE_WINDOW = timedelta(hours=1)
LAST_VIEWED = 10
COUNTED = ("view", "click", "add_to_cart")  # raw.events types counted per category
CATEGORY_ARRAYS = ("live_categories", "live_views", "live_clicks", "live_add_to_cart")
ITEM_ARRAYS = ("last_viewed_item_ids", "wishlist_item_ids", "saved_item_ids", "profile_categories")
FEATURES = (*CATEGORY_ARRAYS, *ITEM_ARRAYS)


_KIND_COLUMN = {"wishlist": "wishlist_item_ids", "saved": "saved_item_ids", "profile_category": "profile_categories"}


def live_activity_frame(conn: psycopg.Connection, user_ids: Iterable[str], *, now: datetime) -> pd.DataFrame:
    """What a push writes: one row per distinct user (first-seen order), every feature list complete as of
    ``now`` (empty lists where there is nothing), ``feature_timestamp`` = ``now``."""
    if now.tzinfo is None:
        raise UserError(f"now must be timezone-aware, got {now!r}")
    users = user_id_list(user_ids)
    rows: dict[str, dict[str, list]] = {u: {f: [] for f in FEATURES} for u in users}
    start = now - LIVE_WINDOW
    if users:
        for user, category, views, clicks, carts in category_counts(conn, users, start, now, COUNTED):
            for column, value in zip(CATEGORY_ARRAYS, (category, views, clicks, carts), strict=True):
                rows[user][column].append(value if column == "live_categories" else int(value))
        for user, item in last_viewed(conn, users, start, now, LAST_VIEWED):
            rows[user]["last_viewed_item_ids"].append(item)
        for user, kind, value in preferences(conn, users):
            if kind in _KIND_COLUMN:
                rows[user][_KIND_COLUMN[kind]].append(value)
    return pd.DataFrame(
        {
            "user_id": users,
            "feature_timestamp": pd.Series([now] * len(users), dtype="datetime64[us, UTC]"),
            **{f: [rows[u][f] for u in users] for f in FEATURES},
        }
    )


def push_live_activity(stack: Stack, user_ids: Iterable[str], *, store: FeatureStore | None = None) -> int:
    """Recompute and push the live activity of ``user_ids`` (after their events are committed); returns the
    number of users pushed."""
    return push_online(stack, PUSH_SOURCE, user_ids, live_activity_frame, store=store)

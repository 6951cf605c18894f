"""Reads of users' recent raw activity that the online features recompute on every push (the collector's
real-time pushes and the pushes after an import): recent purchases, the last hour's engagement, last viewed
items and current preferences. Each takes an open connection, so one push reads everything in one session."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg

# Raw ids are trimmed by ingestion, so these match the mart's (staging-trimmed) ids; the join keys use the
# (user_id, ordered_at) index on raw.orders.
_RECENT_PURCHASES = """
    select o.user_id, oi.item_id, max(o.ordered_at) as purchased_at,
        bool_or(coalesce(i.is_repeat_purchase, false)) as repeatable
    from raw.orders as o
    join raw.order_items as oi on oi.order_id = o.order_id
    left join raw.items as i on i.item_id = oi.item_id
    where o.user_id = any(%(users)s) and o.ordered_at >= %(start)s
    group by o.user_id, oi.item_id
    order by o.user_id, purchased_at desc, oi.item_id
"""

_BATCH_USERS = """
    select o.user_id from raw.orders as o
    where o._batch_id = any(%(batches)s) and o.ordered_at >= %(start)s
    union
    select o.user_id from raw.order_items as oi join raw.orders as o on o.order_id = oi.order_id
    where oi._batch_id = any(%(batches)s) and o.ordered_at >= %(start)s
    order by 1
"""

_COUNTS = """
    select e.user_id, coalesce(i.category, 'unknown') as category,
        count(*) filter (where e.event_type = 'view') as views,
        count(*) filter (where e.event_type = 'click') as clicks,
        count(*) filter (where e.event_type = 'add_to_cart') as add_to_cart
    from raw.events as e
    left join raw.items as i on i.item_id = e.item_id
    where e.user_id = any(%(users)s) and e.occurred_at >= %(start)s and e.occurred_at <= %(now)s
      and e.event_type = any(%(types)s) and e.item_id is not null
    group by 1, 2
    order by 1, count(*) desc, 2
"""

_VIEWED = """
    select user_id, item_id from (
        select user_id, item_id, row_number() over (partition by user_id order by max(occurred_at) desc, item_id) as r
        from raw.events
        where user_id = any(%(users)s) and event_type = 'view' and item_id is not null
          and occurred_at >= %(start)s and occurred_at <= %(now)s
        group by user_id, item_id
    ) as v
    where r <= %(last)s
    order by user_id, r
"""

_PREFERENCES = """
    select user_id, kind, coalesce(item_id, category) as value
    from raw.preferences
    where user_id = any(%(users)s) and coalesce(item_id, category) is not null
    order by user_id, kind, created_at desc, value
"""


def recent_purchases(conn: psycopg.Connection, users: Sequence[str], start: datetime) -> list[tuple]:
    """(user_id, item_id, last purchased_at, repeatable) of every item each user bought since ``start``, newest
    first per user."""
    return conn.execute(_RECENT_PURCHASES, {"users": list(users), "start": start}).fetchall()


def users_in_order_batches(conn: psycopg.Connection, batches: Sequence[int], start: datetime) -> list[str]:
    """Users with an order since ``start`` among the orders or order lines of import ``batches``."""
    return [r[0] for r in conn.execute(_BATCH_USERS, {"batches": list(batches), "start": start}).fetchall()]


def category_counts(
    conn: psycopg.Connection, users: Sequence[str], start: datetime, now: datetime, types: Sequence[str]
) -> list[tuple]:
    """(user_id, category, views, clicks, add_to_cart) in [start, now] per user and category (of ``types``),
    busiest category first."""
    params = {"users": list(users), "start": start, "now": now, "types": list(types)}
    return conn.execute(_COUNTS, params).fetchall()


def last_viewed(conn: psycopg.Connection, users: Sequence[str], start: datetime, now: datetime, last: int) -> list:
    """(user_id, item_id): each user's ``last`` most recently viewed distinct items in [start, now]."""
    params = {"users": list(users), "start": start, "now": now, "last": last}
    return conn.execute(_VIEWED, params).fetchall()


def preferences(conn: psycopg.Connection, users: Sequence[str]) -> list[tuple]:
    """(user_id, kind, item id or category) of the users' current preferences, newest first per kind."""
    return conn.execute(_PREFERENCES, {"users": list(users)}).fetchall()

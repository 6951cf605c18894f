"""What feed generation reads from the warehouse for one cutoff ``as_of``: the catalogue, one shard's user ids,
and those users' histories, one chunk of users at a time (so a shard's memory is bounded by the chunk size,
not by the number of users).

Everything is point-in-time: marts rows of snapshot ``as_of``, raw rows strictly before ``as_of`` 00:00 UTC.

- catalogue: ``marts.item_performance`` (``commercial_score``, ``category``, ``in_stock``, ``is_repeat_purchase``,
  ``recommendable`` where the mart has it) plus what the orders before the cutoff teach about each item
  (``repeat_rate``, ``cycle_days`` over the last :data:`HISTORY_DAYS`, ``popularity`` = orders in the last
  :data:`POPULAR_NOW_DAYS`) and each item's most co-bought items (``co_bought`` / ``co_bought_score``: see
  :mod:`.co_bought`, from the buyers of the same :data:`HISTORY_DAYS`); items of a non-merchandise
  category (settings ``non_merchandise_categories``) are not recommendable; items without a catalogue row (seen
  only in events/orders) stay in the catalogue, so histories that mention them are understood, but are never
  recommended (treated as not in stock);
- users: ``marts.user_features`` (every customer known before ``as_of``) whose hash falls in the shard;
- recent views: each user's ``max_recent_views`` most recently viewed distinct items (``raw.events``, 'view');
- purchases: (user, item) of ``raw.orders`` + ``raw.order_items`` with times bought and days from the last /
  first purchase to the cutoff (exclusions, the history candidates and P(bought again));
- category affinity: ``marts.user_category_propensity.propensity``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from ltvfeed.cutoff import cutoff_instant
from ltvfeed.errors import UserError
from ltvfeed.frames.inputs import HISTORY_COLUMNS, non_merchandise
from ltvfeed.shards import check_shard, shard_sql
from ltvfeed.warehouse.co_bought import with_co_bought
from ltvfeed.warehouse.snapshots import MissingSnapshot

CATALOGUE_COLUMNS = [
    "item_id",
    "category",
    "commercial_score",
    "in_stock",
    "is_repeat_purchase",
    "recommendable",
    "repeat_rate",
    "cycle_days",
    "popularity",
]
HISTORY_DAYS = 365  # orders that teach repeat rates, cycles and the co-bought table
POPULAR_NOW_DAYS = 30  # the "popular now" window
# (item, buyer) of the orders before the cutoff within HISTORY_DAYS: what the learned columns are counted from
BOUGHT_SQL = """
    select oi.item_id, o.user_id, count(distinct o.order_id) as times,
           extract(epoch from max(o.ordered_at) - min(o.ordered_at)) / 86400.0 as span_days
    from raw.orders as o
    join raw.order_items as oi on oi.order_id = o.order_id
    where o.ordered_at < %(cutoff)s and o.ordered_at >= %(cutoff)s - make_interval(days => %(history)s)
    group by oi.item_id, o.user_id
"""


@dataclass(frozen=True)
class UserChunk:
    """A chunk of users and their histories as long frames, ready for :meth:`UserBatch.from_frames`."""

    user_ids: np.ndarray  # [B] str
    views: pd.DataFrame  # user_id, item_id, viewed_at
    purchases: pd.DataFrame  # user_id, item_id, times, last_days, first_days
    category_affinity: pd.DataFrame  # user_id, category, affinity

    def __len__(self) -> int:
        return len(self.user_ids)


class WarehouseInputs:
    """Reads generation inputs for one ``as_of`` over one connection (use as a context manager)."""

    def __init__(
        self, dsn: str, as_of: date, *, max_recent_views: int = 20, non_merchandise: Sequence[str] | None = None
    ) -> None:
        if not isinstance(as_of, date):
            raise UserError(f"as_of must be a date, got {as_of!r}")
        if isinstance(max_recent_views, bool) or not isinstance(max_recent_views, int) or max_recent_views < 0:
            raise UserError(f"max_recent_views must be an integer >= 0, got {max_recent_views!r}")
        self.as_of = as_of
        self.cutoff = cutoff_instant(as_of)
        self.max_recent_views = max_recent_views
        if non_merchandise is None:
            from ltvfeed.settings import get_settings

            non_merchandise = get_settings().non_merchandise_categories
        self.non_merchandise = tuple(non_merchandise)
        # autocommit: read-only queries, never an open transaction (and its snapshot) held between chunks
        self._conn = psycopg.connect(dsn, autocommit=True)

    def __enter__(self) -> WarehouseInputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def _rows(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        try:
            with self._conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        except psycopg.errors.UndefinedTable as exc:
            raise MissingSnapshot(
                f"the warehouse has no marts yet ({str(exc).splitlines()[0]}); run the pipeline first "
                "(`ltvfeed pipeline run`)"
            ) from exc

    def _frame(self, query: str, params: dict[str, Any], columns: list[str]) -> pd.DataFrame:
        return pd.DataFrame(self._rows(query, params), columns=columns)

    def _require_snapshot(self, mart: str) -> None:
        found = self._rows(f"select exists (select 1 from marts.{mart} where as_of = %(as_of)s)", {"as_of": self.as_of})
        if not found[0][0]:
            raise MissingSnapshot(
                f"marts.{mart} has no snapshot for as_of {self.as_of}; run the pipeline for that day first "
                f"(`ltvfeed pipeline run --as-of {self.as_of}`)"
            )

    def catalogue_frame(self, co_bought: bool = True) -> pd.DataFrame:
        """Items of the ``as_of`` snapshot, ordered by id (columns: :data:`CATALOGUE_COLUMNS`, then
        :data:`~.co_bought.CO_BOUGHT_COLUMNS` unless ``co_bought`` is False: callers that only count items or rank
        by commercial performance skip reading the purchases)."""
        self._require_snapshot("item_performance")
        has_flag = self._rows(
            "select exists (select 1 from information_schema.columns where table_schema = 'marts' "
            "and table_name = 'item_performance' and column_name = 'recommendable')",
            {},
        )[0][0]
        recommendable = "coalesce(p.recommendable, true)" if has_flag else "true"
        frame = self._frame(
            f"""
            with bought as ({BOUGHT_SQL}),
            learned as (
                select item_id, avg((times >= 2)::int)::float8 as repeat_rate,
                       (percentile_cont(0.5) within group (order by span_days / (times - 1))
                           filter (where times >= 2))::float8 as cycle_days
                from bought group by item_id
            ),
            recent as (
                select oi.item_id, count(distinct o.order_id)::float8 as popularity
                from raw.orders as o
                join raw.order_items as oi on oi.order_id = o.order_id
                where o.ordered_at < %(cutoff)s and o.ordered_at >= %(cutoff)s - make_interval(days => %(recent)s)
                group by oi.item_id
            )
            select p.item_id, p.category, p.commercial_score, (p.in_stock and p.in_catalog) as in_stock,
                   p.is_repeat_purchase, {recommendable} as recommendable,
                   coalesce(l.repeat_rate, 0), l.cycle_days, coalesce(r.popularity, 0)
            from marts.item_performance as p
            left join learned as l on l.item_id = p.item_id
            left join recent as r on r.item_id = p.item_id
            where p.as_of = %(as_of)s
            order by p.item_id
            """,
            {"as_of": self.as_of, "cutoff": self.cutoff, "history": HISTORY_DAYS, "recent": POPULAR_NOW_DAYS},
            CATALOGUE_COLUMNS,
        )
        for column in ("commercial_score", "repeat_rate", "cycle_days", "popularity"):
            frame[column] = frame[column].astype(np.float64)
        if self.non_merchandise:
            frame["recommendable"] = frame["recommendable"].astype(bool) & ~non_merchandise(
                frame["category"].to_numpy(), self.non_merchandise
            )
        return with_co_bought(frame, self.buyer_items()) if co_bought else frame

    def buyer_items(self) -> pd.DataFrame:
        """(``user_id``, ``item_id``, ``times`` bought) of the orders the learned columns read (:data:`BOUGHT_SQL`:
        before the cutoff, within :data:`HISTORY_DAYS`): what the co-bought table is counted from."""
        frame = self._frame(
            f"select user_id, item_id, times::float8 from ({BOUGHT_SQL}) as bought",
            {"cutoff": self.cutoff, "history": HISTORY_DAYS},
            ["user_id", "item_id", "times"],
        )
        frame["times"] = frame["times"].astype(np.float64)
        return frame

    def count_users(self) -> int:
        """Customers of the ``as_of`` snapshot: every one of them gets a feed."""
        self._require_snapshot("user_features")
        return int(
            self._rows("select count(*) from marts.user_features where as_of = %(as_of)s", {"as_of": self.as_of})[0][0]
        )

    def shard_user_ids(self, shard: int, shards: int) -> np.ndarray:
        """The users of shard ``shard`` of ``shards`` (customers of the ``as_of`` snapshot), ordered by id."""
        check_shard(shard, shards)
        self._require_snapshot("user_features")
        rows = self._rows(
            f"""
            select user_id from marts.user_features
            where as_of = %(as_of)s and mod({shard_sql("user_id")}, %(shards)s) = %(shard)s
            order by user_id
            """,
            {"as_of": self.as_of, "shards": shards, "shard": shard},
        )
        return np.array([r[0] for r in rows], dtype=object)

    def user_chunk(self, user_ids: Sequence[str] | np.ndarray) -> UserChunk:
        """The histories of ``user_ids`` (three queries, whatever the number of users)."""
        ids = [str(u) for u in user_ids]
        params = {"users": ids, "cutoff": self.cutoff, "as_of": self.as_of, "views": self.max_recent_views}
        views = self._frame(
            """
            select user_id, item_id, viewed_at from (
                select user_id, item_id, max(occurred_at) as viewed_at,
                       row_number() over (partition by user_id order by max(occurred_at) desc, item_id) as recency
                from raw.events
                where event_type = 'view' and user_id = any(%(users)s) and item_id is not null
                  and occurred_at < %(cutoff)s
                group by user_id, item_id
            ) as v
            where recency <= %(views)s
            """,
            params,
            ["user_id", "item_id", "viewed_at"],
        )
        purchases = self._frame(
            """
            select o.user_id, oi.item_id, count(distinct o.order_id)::float8 as times,
                   (extract(epoch from %(cutoff)s - max(o.ordered_at)) / 86400.0)::float8 as last_days,
                   (extract(epoch from %(cutoff)s - min(o.ordered_at)) / 86400.0)::float8 as first_days
            from raw.orders as o
            join raw.order_items as oi on oi.order_id = o.order_id
            where o.user_id = any(%(users)s) and o.ordered_at < %(cutoff)s
            group by o.user_id, oi.item_id
            """,
            params,
            ["user_id", "item_id", *HISTORY_COLUMNS],
        )
        affinity = self._frame(
            """
            select user_id, category, propensity
            from marts.user_category_propensity
            where as_of = %(as_of)s and user_id = any(%(users)s)
            """,
            params,
            ["user_id", "category", "affinity"],
        )
        affinity["affinity"] = affinity["affinity"].astype(np.float64)
        return UserChunk(np.array(ids, dtype=object), views, purchases, affinity)

    def user_chunks(self, user_ids: np.ndarray, chunk_users: int) -> Iterator[UserChunk]:
        """:meth:`user_chunk` over consecutive slices of ``chunk_users`` users."""
        if isinstance(chunk_users, bool) or not isinstance(chunk_users, int) or chunk_users < 1:
            raise UserError(f"chunk_users must be an integer >= 1, got {chunk_users!r}")
        for start in range(0, len(user_ids), chunk_users):
            yield self.user_chunk(user_ids[start : start + chunk_users])

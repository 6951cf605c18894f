"""What the purchase-propensity model reads from the warehouse for a cutoff T, as frames: purchases in a window
(ids trimmed exactly as dbt's staging does, so they match the marts), the item, user and user x category
snapshots of T, and the LTV model's scoring of T. Windows are [start, end) at 00:00 UTC."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, timedelta
from decimal import Decimal

import pandas as pd
from psycopg import sql

from ltvfeed.cutoff import cutoff_instant
from ltvfeed.db import connect
from ltvfeed.errors import UserError

POPULARITY = "popularity"  # orders containing the item in the look-back before the cutoff


def _frame(dsn: str, query: str | sql.Composed, params: tuple = ()) -> pd.DataFrame:
    """Rows of a query as a DataFrame; PostgreSQL numerics (Decimal) become floats."""
    with connect(dsn) as conn:
        cur = conn.execute(query, params)
        columns = [c.name for c in cur.description]
        frame = pd.DataFrame(cur.fetchall(), columns=columns)
    for column in frame.columns:
        if frame[column].dtype == object and frame[column].map(lambda v: isinstance(v, Decimal)).any():
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def orders_end(dsn: str) -> date | None:
    """The day after the latest raw order (UTC): purchase windows ending later are not fully observed."""
    rows = _frame(dsn, "select max(ordered_at) as last from raw.orders")
    last = rows["last"].iloc[0] if len(rows) else None
    if last is None or pd.isna(last):
        return None
    return pd.Timestamp(last).tz_convert(UTC).date() + timedelta(days=1)


def purchases(dsn: str, start: date, end: date) -> pd.DataFrame:
    """Distinct (user_id, item_id) pairs bought in [start, end), sorted."""
    return _frame(
        dsn,
        """
        select distinct trim(o.user_id) as user_id, trim(oi.item_id) as item_id
        from raw.orders as o
        join raw.order_items as oi on trim(oi.order_id) = trim(o.order_id)
        where o.ordered_at >= %s and o.ordered_at < %s
        order by 1, 2
        """,
        (cutoff_instant(start), cutoff_instant(end)),
    )


def purchase_counts(dsn: str, start: date, end: date) -> pd.DataFrame:
    """(user_id, item_id, times): orders containing the item per user in [start, end)."""
    return _frame(
        dsn,
        """
        select trim(o.user_id) as user_id, trim(oi.item_id) as item_id, count(distinct o.order_id) as times
        from raw.orders as o
        join raw.order_items as oi on trim(oi.order_id) = trim(o.order_id)
        where o.ordered_at >= %s and o.ordered_at < %s
        group by 1, 2
        order by 1, 2
        """,
        (cutoff_instant(start), cutoff_instant(end)),
    )


def spend_by_category(dsn: str, as_of: date, days: int) -> pd.DataFrame:
    """(user_id, category, spend, log_price_units, priced_units) of the orders in the ``days`` before the cutoff
    ``as_of``: what each customer spent per item category (the ``as_of`` item snapshot's), and the sum of
    quantity x ln(unit price) over the lines with a price (their units beside it), for the mean price paid."""
    require_snapshot(dsn, "item_performance", as_of)
    return _frame(
        dsn,
        """
        select trim(o.user_id) as user_id, p.category,
               sum(oi.quantity * oi.unit_price)::float8 as spend,
               coalesce(sum(oi.quantity * ln(oi.unit_price)) filter (where oi.unit_price > 0), 0)::float8
                   as log_price_units,
               coalesce(sum(oi.quantity) filter (where oi.unit_price > 0), 0)::float8 as priced_units
        from raw.orders as o
        join raw.order_items as oi on trim(oi.order_id) = trim(o.order_id)
        join marts.item_performance as p on p.item_id = trim(oi.item_id) and p.as_of = %s
        where o.ordered_at >= %s and o.ordered_at < %s
        group by 1, 2
        order by 1, 2
        """,
        (as_of, cutoff_instant(as_of - timedelta(days=days)), cutoff_instant(as_of)),
    )


def require_snapshot(dsn: str, table: str, as_of: date) -> None:
    """UserError naming the command to run when ``marts.<table>`` has no snapshot for ``as_of``."""
    found = _frame(dsn, f"select exists (select 1 from marts.{table} where as_of = %s) as found", (as_of,))
    if not bool(found["found"].iloc[0]):
        raise UserError(
            f"marts.{table} has no snapshot for as_of {as_of}: build it first "
            f"(`ltvfeed dbt build --as-of {as_of}` or the ltv_pipeline DAG for that date)"
        )


def item_snapshot(dsn: str, as_of: date, columns: Sequence[str], popularity_days: int) -> pd.DataFrame:
    """``marts.item_performance`` of ``as_of`` (item_id + ``columns``, sorted by item_id) with
    :data:`POPULARITY`: orders containing the item in the ``popularity_days`` before the cutoff."""
    require_snapshot(dsn, "item_performance", as_of)
    query = sql.SQL(
        """
        with sold as (
            select trim(oi.item_id) as item_id, count(distinct o.order_id) as orders
            from raw.orders as o
            join raw.order_items as oi on trim(oi.order_id) = trim(o.order_id)
            where o.ordered_at >= %s and o.ordered_at < %s
            group by 1
        )
        select p.item_id, {columns}, coalesce(s.orders, 0)::double precision as {popularity}
        from marts.item_performance as p
        left join sold as s on s.item_id = p.item_id
        where p.as_of = %s
        order by p.item_id
        """
    ).format(columns=sql.SQL(", ").join(sql.Identifier("p", c) for c in columns), popularity=sql.Identifier(POPULARITY))
    return _frame(dsn, query, (cutoff_instant(as_of - timedelta(days=popularity_days)), cutoff_instant(as_of), as_of))


def user_snapshot(dsn: str, as_of: date, columns: Sequence[str]) -> pd.DataFrame:
    """``marts.user_features`` of ``as_of``: user_id + ``columns`` (none: the ids only), sorted by user_id."""
    require_snapshot(dsn, "user_features", as_of)
    query = sql.SQL("select {} from marts.user_features where as_of = %s order by 1").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in ("user_id", *columns))
    )
    return _frame(dsn, query, (as_of,))


def category_propensity(dsn: str, as_of: date) -> pd.DataFrame:
    """user_id, category, propensity: ``marts.user_category_propensity`` of ``as_of``."""
    require_snapshot(dsn, "user_category_propensity", as_of)
    return _frame(
        dsn, "select user_id, category, propensity from marts.user_category_propensity where as_of = %s", (as_of,)
    )


def _has_predictions(dsn: str) -> bool:
    """Whether the warehouse has the predictions table yet (LTV batch scoring creates it)."""
    exists = _frame(dsn, "select to_regclass('marts.user_ltv_predictions') is not null as found")
    return bool(exists["found"].iloc[0])


def ltv_predictions(dsn: str, as_of: date, model_name: str) -> pd.DataFrame:
    """user_id, prob_return, expected_ltv: the newest scoring of snapshot ``as_of`` by ``model_name`` in
    marts.user_ltv_predictions (written by LTV batch scoring from features as of that cutoff, so point-in-time
    correct); empty when that snapshot was not scored."""
    if not _has_predictions(dsn):
        return pd.DataFrame(columns=["user_id", "prob_return", "expected_ltv"])
    return _frame(
        dsn,
        """
        select distinct on (user_id) user_id, prob_return, expected_ltv
        from marts.user_ltv_predictions
        where as_of = %s and model_name = %s
        order by user_id, feature_timestamp desc, scored_at desc
        """,
        (as_of, model_name),
    )


def ltv_scoring_version(dsn: str, as_of: date, model_name: str) -> str | None:
    """The ``model_name`` version whose scoring of snapshot ``as_of`` :func:`ltv_predictions` reads (the newest),
    or None when that snapshot was not scored."""
    if not _has_predictions(dsn):
        return None
    newest = _frame(
        dsn,
        """
        select model_version from marts.user_ltv_predictions where as_of = %s and model_name = %s
        order by feature_timestamp desc, scored_at desc limit 1
        """,
        (as_of, model_name),
    )
    return None if newest.empty else str(newest["model_version"].iloc[0])

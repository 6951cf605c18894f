"""What LTV training and scoring read from the marts, as frames: labels (``marts.ltv_labels``) and the
``user_features`` snapshot of a cutoff. Rows are keyed by ``user_id`` and ``cutoff`` (the label's / snapshot's
as_of). Backtests read the raw orders themselves (:func:`read_orders`), as a transaction log would give them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pandas as pd
from psycopg import sql

from ltvfeed.db import connect
from ltvfeed.errors import UserError

CUTOFF = "cutoff"
LABEL_COLUMNS = ["user_id", CUTOFF, "horizon_days", "revenue", "orders", "is_complete"]


def _require(conn, table: str) -> None:
    if conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is None:
        raise UserError(f"{table} does not exist: build the marts first (ltvfeed dbt build)")


def read_labels(dsn: str, cutoffs: Sequence[date], horizon_days: int) -> pd.DataFrame:
    """``marts.ltv_labels`` rows of ``cutoffs`` and ``horizon_days`` (revenue as float)."""
    with connect(dsn, autocommit=True) as conn:
        _require(conn, "marts.ltv_labels")
        rows = conn.execute(
            """
            select user_id, cutoff, horizon_days, revenue::double precision, orders, is_complete
            from marts.ltv_labels
            where horizon_days = %s and cutoff = any(%s)
            """,
            (horizon_days, list(cutoffs)),
        ).fetchall()
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def baseline_columns(dsn: str, cutoffs: Sequence[date], columns: Sequence[str]) -> pd.DataFrame:
    """user_id, cutoff and the timestamp ``columns`` (UTC) of the ``user_features`` snapshots of ``cutoffs``:
    what the BTYD and naive baselines need beside the model's features."""
    query = sql.SQL("select user_id, as_of, {} from marts.user_features where as_of = any(%s)").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with connect(dsn, autocommit=True) as conn:
        rows = conn.execute(query, (list(cutoffs),)).fetchall()
    frame = pd.DataFrame(rows, columns=["user_id", CUTOFF, *columns])
    for c in columns:
        frame[c] = pd.to_datetime(frame[c], utc=True)
    return frame


def snapshot_features(dsn: str, as_of: date, columns: Sequence[str]) -> pd.DataFrame:
    """Every customer of the ``user_features`` snapshot ``as_of`` with ``columns`` (and user_id), by user_id.

    The same values Feast's point-in-time join returns for entity rows at as_of 00:00 UTC (that snapshot's
    feature_timestamp); read straight from the mart because one whole snapshot is one indexed query.
    """
    names = [c for c in columns if c != "user_id"]
    query = sql.SQL("select user_id, {} from marts.user_features where as_of = %s order by user_id").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in names)
    )
    with connect(dsn, autocommit=True) as conn:
        _require(conn, "marts.user_features")
        rows = conn.execute(query, (as_of,)).fetchall()
    if not rows:
        raise UserError(f"no user_features snapshot for as_of {as_of}")
    return pd.DataFrame(rows, columns=["user_id", *names])


def read_orders(dsn: str) -> pd.DataFrame:
    """Every order of ``raw.orders`` as a backtest's orders frame: user_id, ordered_at (UTC), amount (float), in
    (user_id, ordered_at, order_id) order so repeated reads give the same frame. Empty without orders."""
    with connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "select user_id, ordered_at, amount::double precision from raw.orders order by user_id, ordered_at, "
            "order_id"
        ).fetchall()
    frame = pd.DataFrame(rows, columns=["user_id", "ordered_at", "amount"])
    return frame.astype({"user_id": str, "amount": "float64"}).assign(
        ordered_at=pd.to_datetime(frame["ordered_at"], utc=True)
    )


def top_predicted_user(dsn: str, model_name: str, version: str) -> str | None:
    """The customer with the highest expected LTV in ``version``'s newest scoring (None if it scored nothing):
    a version's own scores, so a rolled-back version is never the one shown."""
    with connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "select user_id from marts.user_ltv_predictions where model_name = %(m)s and model_version = %(v)s "
            "and as_of = (select max(as_of) from marts.user_ltv_predictions where model_name = %(m)s "
            "and model_version = %(v)s) order by expected_ltv desc, user_id limit 1",
            {"m": model_name, "v": version},
        ).fetchone()
    return row[0] if row else None

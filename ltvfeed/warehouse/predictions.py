"""The LTV model's scores in the warehouse, ``marts.user_ltv_predictions``: written here (replacing one scoring's
rows, one *revision* later when another version scored the snapshot before) and read back for what serves them.

Revisions: scoring an as_of again with the same (model, version, horizon) replaces its rows and keeps their
revision; another version's scoring adds rows one revision later, whose feature_timestamp is as_of 00:00 UTC +
revision microseconds, so point-in-time joins and the online store serve the newest scoring and a backfill of an
older snapshot never overwrites a newer one online. One writer at a time (an advisory lock), in one transaction.
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from ltvfeed.cutoff import cutoff_instant
from ltvfeed.db import connect

PREDICTIONS_TABLE = "marts.user_ltv_predictions"
_LOCK_KEY = 7_311_400_001  # pg advisory lock: one writer of the predictions table at a time


def _next_revision(conn, as_of: date, horizon_days: int, model_name: str, version: str) -> int:
    """The revision a scoring of ``as_of`` gets: the newest one's if it is this (model, version, horizon)'s,
    else one more (0 for the first scoring)."""
    latest = conn.execute(
        f"""
        select model_name, model_version, horizon_days, revision from {PREDICTIONS_TABLE}
        where as_of = %s order by revision desc limit 1
        """,
        (as_of,),
    ).fetchone()
    if latest is None:
        return 0
    if tuple(latest[:3]) == (model_name, version, horizon_days):
        return int(latest[3])
    return int(latest[3]) + 1


def replace_predictions(
    dsn: str, as_of: date, horizon_days: int, model_name: str, version: str, scores: pd.DataFrame
) -> tuple[int, datetime]:
    """Replace this (as_of, horizon, model, version)'s rows with ``scores`` (``user_id`` and the score columns)
    in one transaction, by COPY; returns (revision, feature_timestamp) of the rows written."""
    version = str(version)
    with connect(dsn) as conn:
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        revision = _next_revision(conn, as_of, horizon_days, model_name, version)
        stamp = cutoff_instant(as_of) + timedelta(microseconds=revision)
        conn.execute(
            f"delete from {PREDICTIONS_TABLE} where as_of = %s and horizon_days = %s and model_name = %s "
            "and model_version = %s",
            (as_of, horizon_days, model_name, version),
        )
        values = [c for c in scores.columns if c != "user_id"]
        rows = pd.DataFrame(
            {
                "user_id": scores["user_id"].to_numpy(),
                "as_of": as_of.isoformat(),
                "horizon_days": horizon_days,
                "model_name": model_name,
                "model_version": version,
                **{c: scores[c].to_numpy(np.float64) for c in values},
                "revision": revision,
                "feature_timestamp": stamp.isoformat(),
            }
        )
        buffer = io.StringIO()
        rows.to_csv(buffer, index=False, header=False)  # machine CSV: COPY reads it, nobody opens it
        with (
            conn.cursor() as cur,
            cur.copy(f"copy {PREDICTIONS_TABLE} ({', '.join(rows.columns)}) from stdin with (format csv)") as copy,
        ):
            copy.write(buffer.getvalue())
    return revision, stamp


def newest_scoring(dsn: str, as_of: date) -> tuple[datetime, int] | None:
    """(feature_timestamp, rows) of the newest scoring of snapshot ``as_of`` (what the online store should hold);
    None when nobody scored it."""
    with connect(dsn, autocommit=True) as conn:
        newest = conn.execute(
            f"select max(feature_timestamp), count(*) filter (where feature_timestamp = "
            f"(select max(feature_timestamp) from {PREDICTIONS_TABLE} where as_of = %s)) "
            f"from {PREDICTIONS_TABLE} where as_of = %s",
            (as_of, as_of),
        ).fetchone()
    if newest is None or newest[0] is None:
        return None
    return newest[0], int(newest[1])


def served_prediction(dsn: str, model_name: str) -> tuple[date, str] | None:
    """(as_of, model_version) of ``model_name``'s scoring that apps read: the newest scoring of the newest
    snapshot it scored; None when it never scored one."""
    with connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f"select as_of, model_version from {PREDICTIONS_TABLE} where model_name = %s "
            "order by as_of desc, feature_timestamp desc, scored_at desc limit 1",
            (model_name,),
        ).fetchone()
    return (row[0], str(row[1])) if row else None

"""What experiment read-outs read from the warehouse: an experiment's per-user metrics (the dbt mart
``marts.experiment_user_metrics``) and how many exposures its feeds logged (``raw.exposures``). Writing the
exposure log is the feed API's (:mod:`ltvfeed.experiments.exposures`): that is where raw data lands."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import psycopg

from ltvfeed.db import connect
from ltvfeed.errors import UserError

USER_METRICS_MART = "marts.experiment_user_metrics"


def experiment_user_metrics(dsn: str, name: str, columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` and ``first_exposed_on`` (a timestamp) of experiment ``name``'s rows of the mart, as stored;
    a missing mart or an experiment nobody was exposed to is a one-line UserError."""
    selected = ", ".join(columns)
    try:
        with connect(dsn) as conn:
            cur = conn.execute(
                f"select {selected}, first_exposed_on from {USER_METRICS_MART} where experiment = %s", (name,)
            )
            rows = cur.fetchall()
    except psycopg.errors.UndefinedTable as exc:
        raise UserError(
            f"{USER_METRICS_MART} does not exist: build it with `ltvfeed dbt build --select +experiment_user_metrics`"
        ) from exc
    if not rows:
        raise UserError(
            f"experiment {name!r}: no exposures in {USER_METRICS_MART} (is the feed API logging, and dbt built?)"
        )
    users = pd.DataFrame(rows, columns=[*columns, "first_exposed_on"])
    users["first_exposed_on"] = pd.to_datetime(users["first_exposed_on"])
    return users


def exposures_logged(dsn: str, name: str) -> int:
    """Rows of ``raw.exposures`` for experiment ``name``: every feed served to one of its users."""
    with connect(dsn) as conn:
        return conn.execute("select count(*) from raw.exposures where experiment = %s", (name,)).fetchone()[0]

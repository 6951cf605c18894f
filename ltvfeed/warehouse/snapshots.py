"""Mart snapshots in one place: which cutoffs have one, the newest, and building the missing ones.

A snapshot is the rows of a mart for one cutoff ``as_of``. The daily pipeline builds them (dbt, then the marts'
Great Expectations gate); training and generation may need cutoffs the pipeline never ran. Those are built here
the same way — ``dbt build`` (models and their dbt tests), then the gate on the marts just built — so that no
model ever learns from a snapshot the pipeline would have refused. Each call builds in a dbt target folder of
its own: concurrent runs never share one.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from ltvfeed.db import connect
from ltvfeed.errors import UserError

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack

log = logging.getLogger(__name__)

USER_MART = "marts.user_features"  # every customer known before the cutoff: the LTV model's snapshot
CATALOGUE_MART = "marts.item_performance"  # the catalogue feed generation ranks
# What the propensity model reads, plus user_recent_purchases: `feast apply` checks every view's source exists.
RANKING_MARTS = (USER_MART, CATALOGUE_MART, "marts.user_category_propensity", "marts.user_recent_purchases")


class MissingSnapshot(UserError):
    """No snapshot where one is needed: the pipeline has not run for that cutoff yet."""


def snapshot_dates(dsn: str, table: str = USER_MART) -> list[date]:
    """Cutoffs with a snapshot in ``table``, ascending (empty before the first dbt build)."""
    with connect(dsn) as conn:
        if conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is None:
            return []
        return [r[0] for r in conn.execute(f"select distinct as_of from {table} order by 1")]


def latest_snapshot(dsn: str, table: str = USER_MART, on_or_before: date | None = None) -> date:
    """The newest cutoff with a snapshot in ``table`` (not after ``on_or_before`` when given)."""
    dates = [d for d in snapshot_dates(dsn, table) if on_or_before is None or d <= on_or_before]
    if not dates:
        after = f" on or before {on_or_before}" if on_or_before else ""
        raise MissingSnapshot(
            f"no {table} snapshot{after}: build the marts first (ltvfeed pipeline run, or ltvfeed dbt build)"
        )
    return dates[-1]


def missing_snapshots(dsn: str, dates: Iterable[date], tables: Sequence[str]) -> list[date]:
    """Cutoffs among ``dates`` lacking a snapshot in any of ``tables``, ascending."""
    wanted = set(dates)
    present = wanted
    for table in tables:
        present = present & set(snapshot_dates(dsn, table))
    return sorted(wanted - present)


@contextlib.contextmanager
def dbt_target_dir(target_path: Path | None) -> Iterator[Path]:
    """``target_path`` when given, else a fresh temporary dbt target folder (removed afterwards)."""
    if target_path is not None:
        yield target_path
        return
    with tempfile.TemporaryDirectory(prefix="ltvfeed-dbt-") as tmp:
        yield Path(tmp)


def build_missing_snapshots(
    stack: Stack,
    dates: Iterable[date],
    tables: Sequence[str],
    horizon_days: int | None = None,
    *,
    echo: Callable[[str], None] | None = None,
    target_path: Path | None = None,
) -> list[date]:
    """Build the snapshots of ``tables`` missing for ``dates`` (dbt, one build per cutoff, with the models they
    depend on), each then checked by the marts gate on those tables; returns the cutoffs built. Snapshots
    already present are left as they are: the pipeline built and gated them."""
    from ltvfeed.dbt_runner import build
    from ltvfeed.quality import run_gate

    missing = missing_snapshots(stack.warehouse_dsn, dates, tables)
    select = " ".join(f"+{table.split('.', 1)[1]}" for table in tables)
    with dbt_target_dir(target_path) as target:
        for as_of in missing:
            log.info("building the %s snapshot for as_of %s (dbt, then the marts gate)", ", ".join(tables), as_of)
            build(stack, as_of, horizon_days, select, target_path=target, echo=echo)
            run_gate(stack.warehouse_dsn, "marts", as_of, stack.settings.quality_dir, tables=tables)
    return missing

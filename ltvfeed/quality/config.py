"""The gate's tunables and the run-time values (bounds, limits) its expectations are checked against.

Everything that depends on the run's ``as_of`` or on the data is computed here, in Python, and handed to the
checkpoint as expectation parameters; the suites themselves stay fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ltvfeed.cutoff import cutoff_instant
from ltvfeed.errors import UserError
from ltvfeed.warehouse import RAW_ENTITIES

# Timestamps before this are parse garbage (epoch zero, two-digit years), not history.
EARLIEST_PLAUSIBLE = datetime(1990, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class GateConfig:
    """How strict the gate is. The defaults suit a daily pipeline over one shop."""

    # Row-count sanity ceiling for every table (a runaway duplicate load or a cross join shows up here).
    max_rows: int = 500_000_000
    # Raw tables that must hold at least one row. Only orders by default: a shop known from a transaction
    # log alone has no users, items, events or preferences files, and that is a supported setup.
    required_tables: tuple[str, ...] = ("orders",)
    # Freshness: the newest row of these raw tables may be at most this many days older than as_of
    # (orders are sparse in a small shop, so they get longer than the event stream).
    stale_after_days: dict[str, int] = field(default_factory=lambda: {"events": 3, "orders": 14})

    def __post_init__(self) -> None:
        unknown = [t for t in (*self.required_tables, *self.stale_after_days) if t not in RAW_ENTITIES]
        if unknown:
            raise UserError(f"unknown raw table(s) {unknown} in the quality gate config; known: {RAW_ENTITIES}")
        if self.max_rows < 1 or any(days < 0 for days in self.stale_after_days.values()):
            raise UserError("quality gate config: max_rows must be >= 1 and stale_after_days >= 0")


def future_bound(as_of: date, today: date) -> datetime:
    """Latest acceptable timestamp in raw data: one day past as_of, or past today when as_of lies in the past.
    A backfill of an old as_of runs over raw tables that already hold later (real) data, so the "not in the
    future" bound follows the wall clock then; for the daily run both are the same day."""
    return cutoff_instant(max(as_of, today)) + timedelta(days=1)


def stale_bound(as_of: date, days: int) -> datetime:
    """Oldest acceptable "newest row" of a stream: ``days`` days before as_of 00:00 UTC."""
    return cutoff_instant(as_of) - timedelta(days=days)


def iso(value: date | datetime) -> str:
    """Expectation parameters travel as ISO text (stored in the validation results as JSON)."""
    return value.isoformat()


def raw_parameters(as_of: date, today: date, config: GateConfig) -> dict[str, Any]:
    params: dict[str, Any] = {
        "future_bound": iso(future_bound(as_of, today)),
        "birth_year_max": as_of.year,
    }
    for table, days in config.stale_after_days.items():
        params[f"{table}_latest_min"] = iso(stale_bound(as_of, days))
    return params


def marts_parameters(as_of: date, customers: int, items: int) -> dict[str, Any]:
    return {
        "as_of": iso(as_of),
        "cutoff": iso(cutoff_instant(as_of)),
        "customers": customers,
        "items_known": items,
        "items_min": 1 if items else 0,  # a transaction-log-only shop knows no items: no item snapshot either
    }

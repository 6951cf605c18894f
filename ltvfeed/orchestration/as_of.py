"""Which cutoff date a DAG run works on. One rule, used by every task of every DAG."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any


def resolve_as_of(params: dict[str, Any], logical_date: datetime | None, run_after: datetime | None) -> date:
    """An explicit ``as_of`` param wins (backfills of past cutoffs, re-runs); else the run's logical date
    (the scheduled day: features use data strictly before it); else, for manual runs without a logical date
    (Airflow 3), the day the run was triggered."""
    explicit = params.get("as_of")
    if explicit:
        try:
            return date.fromisoformat(str(explicit))
        except ValueError as exc:
            raise ValueError(f"param as_of must be a date YYYY-MM-DD, got {explicit!r}") from exc
    when = logical_date or run_after
    if when is None:
        raise ValueError("the run has neither an as_of param nor a logical date nor run_after")
    return when.date()

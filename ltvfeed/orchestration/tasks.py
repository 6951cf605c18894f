"""What the ``ltv_pipeline`` tasks do, as plain functions (unit-testable, callable from the CLI too)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from ltvfeed.cutoff import resolve_as_of
from ltvfeed.infra.stack import up
from ltvfeed.settings import Settings


def run_as_of(context: Mapping[str, Any], fallback: Callable[[], date] | None = None) -> date:
    """The cutoff of the DAG run whose task context this is (:func:`ltvfeed.cutoff.resolve_as_of`)."""
    return resolve_as_of(
        context["params"],
        context.get("logical_date"),
        context["dag_run"].run_after,
        context.get("triggering_asset_events"),
        fallback,
    )


def ingest_landing(settings: Settings) -> dict[str, int]:
    """Import every file waiting in the landing folder; files imported before are skipped by content hash."""
    from ltvfeed.ingest import import_directory

    stack = up(settings)
    settings.landing_dir.mkdir(parents=True, exist_ok=True)
    reports = import_directory(stack.warehouse_dsn, settings.landing_dir)
    totals = {"files": len(reports), "already_imported": sum(r.already_imported for r in reports)}
    for field in ("rows_loaded", "rows_duplicate", "rows_quarantined"):
        totals[field] = sum(getattr(r, field) for r in reports)
    return totals


def quality_gate(settings: Settings, layer: str, as_of: date) -> dict[str, object]:
    """Run the layer's expectation suites; raises DataQualityError (failing the task) when any fails."""
    from ltvfeed.quality import run_gate

    stack = up(settings)
    result = run_gate(stack.warehouse_dsn, layer, as_of, settings.quality_dir)
    return {"layer": layer, "as_of": as_of.isoformat(), "data_docs": str(result.data_docs_path)}


def lease_holder(dag_id: str, run_id: str) -> str:
    """The warehouse lease's holder name for a DAG run."""
    return f"{dag_id} {run_id}"


def run_holder(context: Mapping[str, Any]) -> str:
    """The warehouse lease's holder name for the DAG run whose task context this is."""
    return lease_holder(context["dag"].dag_id, context["run_id"])


def take_warehouse(settings: Settings, context: Mapping[str, Any]) -> str | None:
    """Take the warehouse lease for the context's run (:mod:`ltvfeed.warehouse.lease`); None when taken, else who
    has it. A lease held by a run of this Airflow that has finished (its release task never ran: the run was
    stopped) is taken over at once rather than after the lease's TTL."""
    from ltvfeed.warehouse.lease import PROCESS_PREFIX, release, try_acquire

    dsn, holder = up(settings).warehouse_dsn, run_holder(context)
    other = try_acquire(dsn, holder)
    if other is not None and not other.startswith(PROCESS_PREFIX):
        dag_id, run_id = other.split(" ", 1)
        try:
            state = context["ti"].get_dagrun_state(dag_id, run_id)
        except Exception:  # not a run this Airflow knows: wait for it
            return other
        if state in ("success", "failed"):
            release(dsn, other)
            other = try_acquire(dsn, holder)
    return other


def release_warehouse(settings: Settings, context: Mapping[str, Any]) -> bool:
    """Give the context's run's warehouse lease back (whatever its builds did); whether it held it."""
    from ltvfeed.warehouse.lease import release

    return release(up(settings).warehouse_dsn, run_holder(context))

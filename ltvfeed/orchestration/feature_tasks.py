"""Feature-store tasks of ``ltv_pipeline`` (after the marts gate): register the Feast definitions, then load the
cutoff's snapshot into Redis. Plain functions of Settings, so the CLI and tests run exactly what the DAG runs."""

from __future__ import annotations

from datetime import date

from ltvfeed.infra.stack import up
from ltvfeed.settings import Settings


def apply_features(settings: Settings) -> dict[str, object]:
    """``feast apply`` on the stack: idempotent, cheap when nothing changed; run before every materialisation
    so a deployment's new definitions are registered before they are loaded."""
    from ltvfeed.features import apply

    result = apply(up(settings))
    return {"project": result.project, "objects": len(result.applied), "deleted": result.deleted}


def materialize_features(settings: Settings, as_of: date) -> dict[str, object]:
    """Load every view's snapshots up to the cutoff ``as_of`` 00:00 UTC (incrementally from the last run; a
    backfill of an older cutoff than what is online changes nothing there)."""
    from ltvfeed.features import cutoff, materialize_incremental

    windows = materialize_incremental(up(settings), cutoff(as_of))
    return {
        "as_of": as_of.isoformat(),
        "materialized": {w.view: w.start.isoformat() for w in windows if w.start is not None},
        "skipped": sorted(w.view for w in windows if w.start is None),
    }

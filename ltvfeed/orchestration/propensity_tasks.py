"""What the ``propensity_retrain`` tasks do, as plain functions of Settings (CLI, tests and DAG call these).

Cutoffs of a run on ``as_of`` D with purchase window H: evaluation cutoff D - H (the latest whose purchase
window is complete on D), training cutoff D - 2H (its window ends where evaluation starts). Only data before D
is read, so a backfilled run reproduces what a run on D did.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from ltvfeed.cutoff import DEFAULT_PROPENSITY_HORIZON_DAYS, parse_as_of
from ltvfeed.errors import UserError
from ltvfeed.infra.stack import up
from ltvfeed.settings import Settings

log = logging.getLogger(__name__)


def propensity_cutoffs(as_of: date, horizon_days: int) -> tuple[date, date]:
    """(training cutoff, evaluation cutoff) for a run on ``as_of``."""
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or horizon_days < 1:
        raise UserError(f"propensity horizon_days must be a whole number of days >= 1, got {horizon_days!r}")
    eval_cutoff = as_of - timedelta(days=horizon_days)
    return eval_cutoff - timedelta(days=horizon_days), eval_cutoff


def prepare_propensity_data(settings: Settings, as_of: date, params: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the cutoffs, build their missing snapshots, register the Feast definitions (training reads user
    features through Feast). Fails before any training when the data cannot cover the evaluation window."""
    from ltvfeed.features import apply
    from ltvfeed.training.propensity.train import check_dates
    from ltvfeed.warehouse.propensity_reads import orders_end
    from ltvfeed.warehouse.snapshots import RANKING_MARTS, build_missing_snapshots

    horizon = int(params.get("propensity_horizon_days") or DEFAULT_PROPENSITY_HORIZON_DAYS)
    cutoff, eval_cutoff = propensity_cutoffs(as_of, horizon)
    stack = up(settings)
    end = orders_end(stack.warehouse_dsn)
    if not check_dates(cutoff, eval_cutoff, horizon, end):
        raise UserError(
            f"the evaluation window [{eval_cutoff}, {as_of}) is not complete: the data ends on {end}; "
            "run for an earlier as_of"
        )
    built = build_missing_snapshots(stack, [cutoff, eval_cutoff], RANKING_MARTS)
    apply(stack)
    return {
        "as_of": as_of.isoformat(),
        "cutoff": cutoff.isoformat(),
        "eval_cutoff": eval_cutoff.isoformat(),
        "horizon_days": horizon,
        "snapshots_built": [d.isoformat() for d in built],
    }


def train_and_register(settings: Settings, prepared: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Train on the training cutoff, evaluate on the evaluation cutoff, register ``purchase_propensity`` and
    apply the promotion rule (see :func:`ltvfeed.training.propensity.train.train_propensity`)."""
    from ltvfeed.training.propensity.config import PropensityConfig
    from ltvfeed.training.propensity.train import train_propensity

    tuning = {"learning_rate": float(params["learning_rate"])} if params.get("learning_rate") is not None else {}
    cfg = PropensityConfig(seed=int(params.get("seed") or 0), max_epochs=int(params.get("max_epochs") or 40), **tuning)
    result = train_propensity(
        up(settings),
        parse_as_of(prepared["cutoff"], "cutoff"),
        parse_as_of(prepared["eval_cutoff"], "eval_cutoff"),
        int(prepared["horizon_days"]),
        cfg,
    )
    model = result.metrics.loc["model"]
    return {
        "as_of": prepared["as_of"],
        "run_id": result.run_id,
        "version": result.version,
        "promoted": result.promoted,
        "reason": result.reason,
        "holdout_id": result.holdout_id,
        **{f"{name}": float(value) for name, value in model.items()},
    }

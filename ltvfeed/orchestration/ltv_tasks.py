"""What the ``ltv_retrain`` tasks do, as plain functions of Settings (the CLI and tests call the same ones).

Which cutoff a run works on is the one rule of :mod:`ltvfeed.cutoff` (a run with nothing else to go by takes
the newest snapshot: :func:`retrain_as_of`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from typing import Any

from ltvfeed.cutoff import (
    MIN_FEATURE_HISTORY_DAYS,
    default_ltv_horizon,
    parse_as_of,
)
from ltvfeed.errors import UserError
from ltvfeed.infra.stack import up
from ltvfeed.settings import Settings

log = logging.getLogger(__name__)


def retrain_as_of(settings: Settings, context: Mapping[str, Any]) -> date:
    """The run's cutoff by the one rule; a run with nothing to go by (no param, logical date or event) takes the
    newest snapshot in the warehouse."""
    from ltvfeed.orchestration.tasks import run_as_of
    from ltvfeed.warehouse.snapshots import latest_snapshot

    return run_as_of(context, fallback=lambda: latest_snapshot(up(settings).warehouse_dsn))


def retrain_history(dsn: str, as_of: date) -> tuple[date, date] | None:
    """(first day with an order before ``as_of``, first day not observed by ``as_of``); None without orders.
    The end is dbt's ``data_end_date`` (the day after the latest event or order) capped at ``as_of``."""
    from ltvfeed.warehouse.extent import data_end, first_day_before

    first = first_day_before(dsn, as_of, signups=False)
    if first is None:
        return None
    return first, min(as_of, data_end(dsn) or as_of)


def plan_from_params(as_of: date, params: Mapping[str, Any], history: tuple[date, date] | None = None):
    """The run's TrainingPlan from the DAG params (see ``ltvfeed.training.ltv_data.plan_for_as_of``). Without a
    ``horizon_days`` param the horizon and holdout fit ``history`` (:func:`ltvfeed.cutoff.default_ltv_horizon`):
    365 days when the shop has the history for it, else the longest that has complete labels. A plan whose
    earliest training cutoff precedes the history is refused here, in seconds, naming the param to set."""
    from ltvfeed.training.ltv_data import plan_for_as_of

    n_cutoffs = int(params.get("train_cutoffs") or 1)
    step_days = int(params.get("cutoff_step_days") or 30)
    holdout = parse_as_of(params.get("holdout_cutoff"), "param holdout_cutoff")
    horizon = params.get("horizon_days")
    if history is None:
        if not horizon:
            raise UserError(f"no orders before {as_of}: nothing to train on (import orders, or use a later as_of)")
    elif not horizon:
        horizon, fitted_holdout = default_ltv_horizon(*history, n_cutoffs, step_days)
        holdout = holdout or fitted_holdout
        log.info("horizon_days not set: %s days fit the history %s .. %s", horizon, *history)
    plan = plan_for_as_of(
        as_of,
        int(horizon),
        n_cutoffs,
        step_days,
        holdout_cutoff=holdout,
        train_cutoff=parse_as_of(params.get("train_cutoff"), "param train_cutoff"),
    )
    earliest = plan.train_cutoffs[0]
    if history is not None and (earliest - history[0]).days < MIN_FEATURE_HISTORY_DAYS:
        try:
            fits = f"horizon_days={default_ltv_horizon(*history, n_cutoffs, step_days)[0]} fits it (or leave it unset)"
        except UserError as exc:
            fits = str(exc)
        raise UserError(
            f"horizon_days={plan.horizon_days}, train_cutoffs={n_cutoffs} put the earliest training cutoff at "
            f"{earliest}, but the shop's orders start on {history[0]} (at least {MIN_FEATURE_HISTORY_DAYS} days of "
            f"history needed before it): {fits}"
        )
    return plan


def prepare_training_data(settings: Settings, as_of: date, params: Mapping[str, Any]) -> dict[str, Any]:
    """Plan the run, build the snapshots it needs (and the scoring snapshot as_of), labels for its horizon,
    register the Feast definitions; fails early when a cutoff has no complete labels."""
    from ltvfeed.training.ltv_run import prepare_training_data as prepare

    stack = up(settings)
    plan = plan_from_params(as_of, params, retrain_history(stack.warehouse_dsn, as_of))
    return {"as_of": as_of.isoformat(), **prepare(stack, plan, also_snapshots=(as_of,))}


def train_and_register(settings: Settings, prepared: Mapping[str, Any]) -> dict[str, Any]:
    """Fit the network and the baselines, log everything to MLflow, register ``ltv`` and apply the promotion
    rule (champion only if it beats the champion on the same holdout by the configured margins)."""
    from ltvfeed.training.ltv_data import TrainingPlan
    from ltvfeed.training.ltv_run import train_ltv

    result = train_ltv(up(settings), TrainingPlan.from_dict(prepared["plan"]), prepare=False)
    return result.summary()


def promotion_gate(settings: Settings, trained: Mapping[str, Any], model_name: str = "ltv") -> dict[str, Any]:
    """Report the decision and name the champion the next step will use: the new version if it was promoted,
    else the current champion (possibly set by hand). Fails when ``model_name`` has no champion at all."""
    from ltvfeed.errors import UserError
    from ltvfeed.training.registry import current_champion

    champion = current_champion(up(settings), model_name)
    decision = "promoted" if trained.get("promoted") else "refused"
    log.info("%s v%s %s: %s", model_name, trained.get("version"), decision, trained.get("reason"))
    if champion is None:
        raise UserError(
            f"{model_name} has no champion after this run (v{trained.get('version')} {decision}): nothing to use"
        )
    return {
        "version": trained.get("version"),
        "decision": decision,
        "reason": trained.get("reason"),
        "champion": champion,
    }


def batch_score(settings: Settings, as_of: date) -> dict[str, Any]:
    """Score snapshot ``as_of`` with the champion (resolved now) into marts.user_ltv_predictions."""
    from ltvfeed.training.ltv_scoring import score_snapshot

    return score_snapshot(up(settings), as_of).summary()


def materialize_predictions(settings: Settings, as_of: date) -> dict[str, Any]:
    """Load the snapshot's predictions into Redis through Feast (view user_ltv)."""
    from ltvfeed.training.ltv_scoring import materialize_predictions as load

    return load(up(settings), as_of)

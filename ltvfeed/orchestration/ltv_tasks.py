"""What the ``ltv_retrain`` tasks do, as plain functions of Settings (the CLI and tests call the same ones).

Which cutoff a run works on: an explicit ``as_of`` param, else the scheduled/backfilled run's logical date
(:func:`ltvfeed.orchestration.as_of.resolve_as_of`); a run triggered by the marts asset takes the ``as_of`` its
newest event carries (ltv_pipeline's marts gate sets it), else the as_of of the run that sent the event, else
the newest snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from ltvfeed.errors import UserError
from ltvfeed.infra.stack import up
from ltvfeed.settings import Settings

log = logging.getLogger(__name__)


def _events(triggering_events: Mapping[Any, Iterable[Any]] | None) -> list[Any]:
    """Every asset event of the context's ``triggering_asset_events`` (asset -> events), newest first."""
    try:
        events = [e for batch in (triggering_events or {}).values() for e in batch]
        return sorted(events, key=lambda e: e.timestamp, reverse=True)
    except Exception as exc:  # an accessor that cannot be read must not stop the run: fall back below
        log.info("cannot read the triggering asset events: %s", exc)
        return []


def resolve_retrain_as_of(
    params: Mapping[str, Any],
    logical_date: datetime | None,
    run_after: datetime | None,
    triggering_events: Mapping[Any, Iterable[Any]] | None = None,
    settings: Settings | None = None,
) -> date:
    """The run's as_of (see the module doc). Asset-triggered runs have no logical date in Airflow 3."""
    from ltvfeed.orchestration.as_of import resolve_as_of

    if params.get("as_of") or logical_date is not None:
        return resolve_as_of(dict(params), logical_date, run_after)
    for event in _events(triggering_events):
        extra = getattr(event, "extra", None) or {}
        if extra.get("as_of"):  # ltv_pipeline's marts gate names the snapshot it published
            try:
                return date.fromisoformat(str(extra["as_of"]))
            except ValueError as exc:
                raise UserError(f"a triggering asset event carries an invalid as_of {extra['as_of']!r}") from exc
        try:
            source = event.source_dag_run
        except Exception as exc:  # the source run may be gone (deleted, or an event posted through the API)
            log.info("cannot read the run behind asset event %s: %s", event, exc)
            continue
        if source is not None:
            return resolve_as_of(dict(source.conf or {}), source.logical_date, source.run_after)
    if settings is not None:
        from ltvfeed.training.ltv_data import latest_snapshot

        return latest_snapshot(up(settings).warehouse_dsn)
    return resolve_as_of(dict(params), logical_date, run_after)


def plan_from_params(as_of: date, params: Mapping[str, Any]):
    """The run's TrainingPlan from the DAG params (see ``ltvfeed.training.ltv_data.plan_for_as_of``)."""
    from ltvfeed.training.ltv_data import plan_for_as_of

    def day(name: str) -> date | None:
        value = params.get(name)
        try:
            return date.fromisoformat(str(value)) if value else None
        except ValueError as exc:
            raise UserError(f"param {name} must be a date YYYY-MM-DD, got {value!r}") from exc

    return plan_for_as_of(
        as_of,
        int(params.get("horizon_days") or 365),
        int(params.get("train_cutoffs") or 1),
        int(params.get("cutoff_step_days") or 30),
        holdout_cutoff=day("holdout_cutoff"),
        train_cutoff=day("train_cutoff"),
    )


def prepare_training_data(settings: Settings, as_of: date, params: Mapping[str, Any]) -> dict[str, Any]:
    """Plan the run, build the snapshots it needs (and the scoring snapshot as_of), labels for its horizon,
    register the Feast definitions; fails early when a cutoff has no complete labels."""
    from ltvfeed.training.ltv_run import prepare_training_data as prepare

    plan = plan_from_params(as_of, params)
    return {"as_of": as_of.isoformat(), **prepare(up(settings), plan, also_snapshots=(as_of,))}


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

"""Model registry: register versions, promote with aliases, roll back. Works for any registered model.

Aliases, not stages (deprecated since MLflow 2.9). A newly registered version gets ``challenger``. It gets
``champion`` only when it beats the current champion on the SAME holdout by the margins in
:class:`PromotionConfig`; the first version of a model becomes champion. Every decision's reason is written as
tags on the model version and on its run, and returned.

Whatever holds ``champion`` is the champion: everything loads ``models:/NAME@champion``, so moving the alias by
hand in the MLflow UI is honoured. The model tag ``champion_history`` keeps the versions that were champion, in
order, so that ``rollback`` can go back; a hand move not yet in it is taken into account when rolling back.

A version may carry the last day of data it was trained and judged on (tag ``data_through``). A version whose
data ends before the champion's is never promoted automatically, whatever it scores: backfilling a past cutoff
re-creates an old model, which must not replace one that knows more recent customers (a person can still
promote it by hand).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ltvfeed.errors import UserError
from ltvfeed.infra.tracking import check_name, configure_mlflow

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.pyfunc import PyFuncModel

    from ltvfeed.infra.stack import Stack

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
HOLDOUT_TAG = "holdout_id"
DATA_THROUGH_TAG = "data_through"
METRIC_TAG_PREFIX = "holdout."
DECISION_TAG = "promotion.decision"
REASON_TAG = "promotion.reason"
AGAINST_TAG = "promotion.against_version"
DECIDED_AT_TAG = "promotion.at"
ROLLED_BACK_TAG = "promotion.rolled_back"
_HISTORY_KEEP = 200  # tag values are limited in size; older entries are of no use to a rollback
_EPS = 1e-12  # a gain equal to the margin must not fail on float rounding


class PromotionConfig(BaseSettings):
    """When a challenger may replace the champion. Env: LTVFEED_PROMOTION_<FIELD>, e.g. ..._MARGIN_GINI."""

    model_config = SettingsConfigDict(env_prefix="LTVFEED_PROMOTION_", extra="ignore", frozen=True)

    gini_metric: str = Field("normalized_gini", description="Ranking metric that must improve")
    margin_gini: float = Field(0.005, ge=0, description="Minimum gain of gini_metric over the champion")
    spearman_metric: str = Field("spearman", description="Metric that must not get (much) worse")
    tolerance_spearman: float = Field(0.01, ge=0, description="Largest allowed drop of spearman_metric")


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    against_version: str | None = None


@dataclass(frozen=True)
class PromotionOutcome:
    version: str
    decision: PromotionDecision
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None


@dataclass(frozen=True)
class VersionSummary:
    """One registered version as ``ltvfeed models list`` shows it."""

    version: str
    aliases: tuple[str, ...]
    created: datetime
    run_id: str | None
    holdout_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    decision: str | None = None
    reason: str | None = None


# --- deciding (pure) -------------------------------------------------------------------------------------


def _metric(metrics: Mapping[str, float], name: str, whose: str) -> float:
    if name not in metrics:
        raise UserError(
            f"{whose} metrics lack {name!r} (have: {', '.join(sorted(metrics)) or 'none'}); compute it on the "
            "holdout or change LTVFEED_PROMOTION_GINI_METRIC / LTVFEED_PROMOTION_SPEARMAN_METRIC"
        )
    return float(metrics[name])


def compare_to_champion(
    challenger_metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None,
    cfg: PromotionConfig,
) -> PromotionDecision:
    """Promote or not, and why. Both metric sets must come from the same holdout."""
    g_new = _metric(challenger_metrics, cfg.gini_metric, "challenger")
    s_new = _metric(challenger_metrics, cfg.spearman_metric, "challenger")
    if math.isnan(g_new) or math.isnan(s_new):
        return PromotionDecision(False, f"refused: challenger {cfg.gini_metric}={g_new} {cfg.spearman_metric}={s_new}")
    if champion_metrics is None:
        return PromotionDecision(
            True, f"no champion yet: first version becomes champion ({cfg.gini_metric} {g_new:.4f})"
        )
    g_old = _metric(champion_metrics, cfg.gini_metric, "champion")
    s_old = _metric(champion_metrics, cfg.spearman_metric, "champion")
    gain, drop = g_new - g_old, s_old - s_new
    detail = (
        f"{cfg.gini_metric} {g_new:.4f} vs champion {g_old:.4f} (gain {gain:+.4f}, needs >= {cfg.margin_gini:.4f}); "
        f"{cfg.spearman_metric} {s_new:.4f} vs champion {s_old:.4f} (drop {drop:+.4f}, allowed <= "
        f"{cfg.tolerance_spearman:.4f})"
    )
    if math.isnan(g_old) or math.isnan(s_old):
        return PromotionDecision(
            False, f"refused: the champion's metrics are NaN, promote by hand if intended; {detail}"
        )
    failed = []
    if gain < cfg.margin_gini - _EPS:
        failed.append(f"{cfg.gini_metric} gain too small")
    if drop > cfg.tolerance_spearman + _EPS:
        failed.append(f"{cfg.spearman_metric} dropped too much")
    if failed:
        return PromotionDecision(False, f"refused ({', '.join(failed)}): {detail}")
    return PromotionDecision(True, f"beats champion: {detail}")


# --- reading the registry --------------------------------------------------------------------------------


def _is_missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def _registered_aliases(client: MlflowClient, model_name: str) -> dict[str, str] | None:
    """alias -> version of a registered model; None when the model does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(model_name)
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def _champion(client: MlflowClient, model_name: str) -> str | None:
    return (_registered_aliases(client, model_name) or {}).get(CHAMPION)


def _version_exists(client: MlflowClient, model_name: str, version: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(model_name, version)
    except MlflowException as exc:
        if _is_missing(exc):
            return False
        raise
    return True


def _require_version(client: MlflowClient, model_name: str, version: str) -> None:
    if _registered_aliases(client, model_name) is None:
        raise UserError(f"no registered model {model_name!r} (see `ltvfeed models list`)")
    if not _version_exists(client, model_name, version):
        raise UserError(f"model {model_name!r} has no version {version!r} (see `ltvfeed models list {model_name}`)")


def current_champion(stack: Stack, model_name: str) -> str | None:
    """Version that holds the ``champion`` alias now (wherever it was set), or None."""
    return _champion(configure_mlflow(stack), check_name("model", model_name))


def _timeline(client: MlflowClient, model_name: str) -> list[str]:
    """Versions that were champion, oldest first, ending with the current one (also when moved by hand)."""
    tags = client.get_registered_model(model_name).tags or {}
    history = [v for v in tags.get(HISTORY_TAG, "").split(",") if v]
    current = _champion(client, model_name)
    if current is not None and (not history or history[-1] != current):
        history.append(current)
    return history


def champion_history(stack: Stack, model_name: str) -> list[str]:
    """Versions that were champion, oldest first; the last one is the current champion."""
    client = configure_mlflow(stack)
    if _registered_aliases(client, check_name("model", model_name)) is None:
        return []
    return _timeline(client, model_name)


def load_champion(stack: Stack, model_name: str) -> PyFuncModel:
    """The champion as a pyfunc model, resolved through the alias at call time."""
    client = configure_mlflow(stack)
    if _champion(client, check_name("model", model_name)) is None:
        raise UserError(
            f"model {model_name!r} has no champion yet: train and register a version, or set the "
            f"'{CHAMPION}' alias in the MLflow UI / with `ltvfeed models promote`"
        )
    import mlflow

    return mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}")


def list_models(stack: Stack) -> list[tuple[str, dict[str, str]]]:
    """(name, aliases) of every registered model, by name."""
    client = configure_mlflow(stack)
    models = client.search_registered_models(max_results=1000)
    return sorted((m.name, {a: str(v) for a, v in (m.aliases or {}).items()}) for m in models)


def list_versions(stack: Stack, model_name: str) -> list[VersionSummary]:
    """Every version of a model, newest first, with aliases, holdout metrics and the promotion decision."""
    client = configure_mlflow(stack)
    aliases = _registered_aliases(client, check_name("model", model_name))
    if aliases is None:
        raise UserError(f"no registered model {model_name!r} (see `ltvfeed models list`)")
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{model_name}'", max_results=10000):
        tags = mv.tags or {}
        rows.append(
            VersionSummary(
                version=str(mv.version),
                aliases=tuple(sorted(by_version.get(str(mv.version), []))),
                created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
                run_id=mv.run_id,
                holdout_id=tags.get(HOLDOUT_TAG),
                metrics={
                    k.removeprefix(METRIC_TAG_PREFIX): float(v)
                    for k, v in tags.items()
                    if k.startswith(METRIC_TAG_PREFIX)
                },
                decision=tags.get(DECISION_TAG),
                reason=tags.get(REASON_TAG),
            )
        )
    return sorted(rows, key=lambda r: int(r.version), reverse=True)


# --- writing the registry --------------------------------------------------------------------------------


def register_version(
    stack: Stack,
    model_uri: str,
    model_name: str,
    holdout_id: str,
    metrics: Mapping[str, float],
    data_through: date | None = None,
) -> str:
    """Register a logged model as a new version with alias ``challenger``; returns the version.

    ``model_uri`` is what ``log_model`` returned (``ModelInfo.model_uri``, ``models:/m-...``) or
    ``runs:/RUN_ID/NAME``. The holdout id and its metrics are kept as version tags, so that the list and the
    UI show what each version scored and on which holdout; ``data_through`` (the run's cutoff: nothing on or
    after it was read) is what keeps a backfilled version from displacing a newer champion.
    """
    check_name("model", model_name)
    if not holdout_id:
        raise UserError("holdout_id is empty: name the holdout the metrics were computed on")
    client = configure_mlflow(stack)
    import mlflow

    tags = {HOLDOUT_TAG: holdout_id, **{f"{METRIC_TAG_PREFIX}{k}": repr(float(v)) for k, v in metrics.items()}}
    if data_through is not None:
        tags[DATA_THROUGH_TAG] = data_through.isoformat()
    mv = mlflow.register_model(model_uri, model_name, tags=tags)
    version = str(mv.version)
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    return version


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _record(
    client: MlflowClient, model_name: str, version: str, decision: str, reason: str, against: str | None
) -> None:
    """Write a decision on the version and on the run that produced it."""
    tags = {DECISION_TAG: decision, REASON_TAG: reason, AGAINST_TAG: against or "none", DECIDED_AT_TAG: _now()}
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    run_id = client.get_model_version(model_name, version).run_id
    if run_id:
        for key, value in tags.items():
            client.set_tag(run_id, f"{model_name}.{key}", value)
        client.set_tag(run_id, f"{model_name}.version", version)


def _make_champion(client: MlflowClient, model_name: str, version: str) -> None:
    history = _timeline(client, model_name)
    if not history or history[-1] != version:
        history.append(version)
    client.set_registered_model_alias(model_name, CHAMPION, version)  # first: the alias is what counts
    client.set_registered_model_tag(model_name, HISTORY_TAG, ",".join(history[-_HISTORY_KEEP:]))
    if (_registered_aliases(client, model_name) or {}).get(CHALLENGER) == version:
        client.delete_registered_model_alias(model_name, CHALLENGER)


def decide_promotion(
    stack: Stack,
    model_name: str,
    challenger_version: str,
    challenger_metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None,
    cfg: PromotionConfig | None = None,
    veto: str | None = None,
) -> PromotionDecision:
    """Decide whether the challenger replaces the champion, record why, and apply it.

    ``champion_metrics`` are the current champion's metrics on the same holdout as ``challenger_metrics``
    (load it with :func:`load_champion`); None only when the model has no champion yet. ``veto``: why the
    challenger must not become champion whatever the comparison says (e.g. worse than a baseline), or None.
    """
    cfg = cfg or PromotionConfig()
    client = configure_mlflow(stack)
    challenger_version = str(challenger_version)
    _require_version(client, check_name("model", model_name), challenger_version)
    champion = _champion(client, model_name)
    if champion == challenger_version:
        return PromotionDecision(False, f"version {champion} already is the champion", champion)
    if champion is not None and champion_metrics is None:
        raise UserError(
            f"model {model_name!r} has champion version {champion}: evaluate it on the same holdout and pass "
            "champion_metrics"
        )
    if champion is None and champion_metrics is not None:
        raise UserError(f"champion_metrics given, but model {model_name!r} has no champion")
    older = _older_data(client, model_name, challenger_version, champion)
    decision = compare_to_champion(challenger_metrics, champion_metrics, cfg)
    if older is not None and decision.promoted:
        decision = PromotionDecision(False, f"refused: {older}; it scored: {decision.reason}")
    if veto is not None and decision.promoted:
        decision = PromotionDecision(False, f"refused: {veto}; it scored: {decision.reason}")
    decision = PromotionDecision(decision.promoted, decision.reason, champion)
    _record(
        client,
        model_name,
        challenger_version,
        "promoted" if decision.promoted else "refused",
        decision.reason,
        champion,
    )
    if decision.promoted:
        _make_champion(client, model_name, challenger_version)
    return decision


def _older_data(client: MlflowClient, model_name: str, challenger: str, champion: str | None) -> str | None:
    """Why the challenger is from an older cutoff than the champion (a backfill), or None."""
    if champion is None:
        return None
    theirs = client.get_model_version(model_name, champion).tags.get(DATA_THROUGH_TAG)
    ours = client.get_model_version(model_name, challenger).tags.get(DATA_THROUGH_TAG)
    if not theirs or not ours or ours >= theirs:  # ISO dates compare as text
        return None
    return (
        f"trained on data through {ours}, older than champion v{champion}'s {theirs} (a backfilled cutoff never "
        "replaces a newer champion automatically; `ltvfeed models promote` can)"
    )


def register_and_promote(
    stack: Stack,
    model_uri: str,
    model_name: str,
    holdout_id: str,
    evaluate: Callable[[PyFuncModel], Mapping[str, float]],
    cfg: PromotionConfig | None = None,
    data_through: date | None = None,
    veto: str | None = None,
) -> PromotionOutcome:
    """The whole step for a training run: evaluate challenger and champion with the same ``evaluate``.

    ``evaluate`` scores a loaded pyfunc model on one holdout (the one named ``holdout_id``); applying the same
    function to both models is what makes the comparison fair. ``veto``: see :func:`decide_promotion`.
    """
    import mlflow

    configure_mlflow(stack)
    challenger_metrics = {k: float(v) for k, v in evaluate(mlflow.pyfunc.load_model(model_uri)).items()}
    version = register_version(stack, model_uri, model_name, holdout_id, challenger_metrics, data_through)
    champion_metrics = None
    if current_champion(stack, model_name) is not None:
        champion_metrics = {k: float(v) for k, v in evaluate(load_champion(stack, model_name)).items()}
    decision = decide_promotion(stack, model_name, version, challenger_metrics, champion_metrics, cfg, veto)
    return PromotionOutcome(version, decision, challenger_metrics, champion_metrics)


def promote(stack: Stack, model_name: str, version: str, reason: str) -> None:
    """Make ``version`` the champion unconditionally (a person's decision); the reason is recorded."""
    client = configure_mlflow(stack)
    version = str(version)
    _require_version(client, check_name("model", model_name), version)
    if not reason.strip():
        raise UserError("a promotion by hand needs a reason")
    _record(client, model_name, version, "promoted by hand", reason, _champion(client, model_name))
    _make_champion(client, model_name, version)


def rollback(stack: Stack, model_name: str, reason: str | None = None) -> str:
    """Give ``champion`` back to the previous champion; returns that version.

    Repeated rollbacks walk further back. Versions deleted meanwhile are skipped.
    """
    client = configure_mlflow(stack)
    if _registered_aliases(client, check_name("model", model_name)) is None:
        raise UserError(f"no registered model {model_name!r} (see `ltvfeed models list`)")
    current = _champion(client, model_name)
    if current is None:
        raise UserError(f"model {model_name!r} has no champion: nothing to roll back")
    history = _timeline(client, model_name)[:-1]
    while history and (history[-1] == current or not _version_exists(client, model_name, history[-1])):
        history.pop()
    if not history:
        raise UserError(f"model {model_name!r} has no earlier champion than version {current} to roll back to")
    target = history[-1]
    reason = reason or f"rollback from version {current}"
    client.set_registered_model_alias(model_name, CHAMPION, target)
    client.set_registered_model_tag(model_name, HISTORY_TAG, ",".join(history[-_HISTORY_KEEP:]))
    _record(client, model_name, target, "restored by rollback", reason, current)
    client.set_model_version_tag(model_name, current, ROLLED_BACK_TAG, f"{_now()} {reason}")
    return target

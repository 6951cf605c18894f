"""One LTV training run: data for a :class:`~ltvfeed.training.ltv_data.TrainingPlan`, the ZILN network and both
baselines fitted on the same rows, all three judged on the later holdout, everything recorded in MLflow, and the
network registered as ``ltv`` through the registry's promotion rule.

Reproducible: the rows come sorted from the warehouse, the network is seeded (``TrainConfig.seed``) and the
baselines are deterministic, so the same plan on the same data gives the same model and metrics; the run's
parameters hold the plan (cutoffs, horizon, window) and the training configuration.

Recorded per run: parameters; holdout metrics of the network (``normalized_gini``, ``spearman``, the calibration
bar ``vwde``, ``total_error``, ``decile_mape_valued``, ...) and of each baseline (``baseline.<name>.<metric>``);
``decile_mape_noise_{p05,median,p95}``, the decile MAPE a perfectly specified model would score on the same
holdout from the noise of one future alone; the loss curve; gain, decile
and calibration charts; the metrics and decile tables; the model as a pyfunc (signature + input example). The
promotion decision and its reason are tags on the run and the model version (see
:mod:`ltvfeed.training.registry`); a network worse than a baseline on the holdout (:class:`BaselineGate`) is never
promoted, not even as the first version.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ltvfeed import csv_output
from ltvfeed.errors import UserError
from ltvfeed.training.fit import TrainConfig
from ltvfeed.training.ltv_data import (
    FeatureSchema,
    LabelledFrame,
    TrainingPlan,
    as_model_input,
    ensure_snapshots,
    labelled_frame,
    ltv_feature_schema,
)
from ltvfeed.warehouse.ltv_reads import CUTOFF

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack
    from ltvfeed.training.baselines import BtydBaseline, NaiveBaseline
    from ltvfeed.training.fit import LtvModel
    from ltvfeed.training.registry import PromotionConfig

log = logging.getLogger(__name__)

MODEL_NAME = "ltv"
EXPERIMENT = "ltv"
NETWORK = "ziln"
BTYD = "bgnbd_gamma_gamma"
NAIVE = "naive"


@dataclass(frozen=True)
class BaselineGate:
    """The network must not be worse than the best classic model (naive, BG/NBD + Gamma-Gamma) on its own
    out-of-time holdout, on each of these metrics, to become champion; the first version included."""

    higher_is_better: tuple[str, ...] = ("normalized_gini", "spearman")
    # Calibration: the value-weighted decile error (issue 15's bar) may not be worse than the best classic's.
    lower_is_better: tuple[str, ...] = ("vwde",)
    tolerance: float = 0.0  # how much worse than the best baseline still passes


def baseline_veto(metrics: pd.DataFrame, gate: BaselineGate, network: str = NETWORK) -> str | None:
    """Why the network (row ``network`` of ``metrics``) is worse than a baseline (the other rows), or None."""
    baselines = metrics.drop(index=network)
    if baselines.empty:
        return None
    net = metrics.loc[network]
    worse = []
    for metric, higher in [*((m, True) for m in gate.higher_is_better), *((m, False) for m in gate.lower_is_better)]:
        column = baselines[metric].dropna()
        if column.empty:
            continue
        best_name = column.idxmax() if higher else column.idxmin()
        best, ours = float(column[best_name]), float(net[metric])
        behind = (best - ours) if higher else (ours - best)
        if not math.isfinite(ours) or behind > gate.tolerance:
            worse.append(f"{metric} {ours:.4f} vs {best_name} {best:.4f}")
    return f"worse than a baseline on the holdout ({'; '.join(worse)})" if worse else None


@dataclass(frozen=True)
class LtvRunConfig:
    """How to train (the plan says on what). ``exclude_features`` drops inputs of the ``ltv_model`` service."""

    train: TrainConfig = field(default_factory=TrainConfig)
    exclude_features: tuple[str, ...] = ()
    model_name: str = MODEL_NAME
    experiment: str = EXPERIMENT
    promotion: PromotionConfig | None = None  # None: PromotionConfig() (LTVFEED_PROMOTION_* environment)
    baseline_gate: BaselineGate = field(default_factory=BaselineGate)


@dataclass
class FittedModels:
    network: LtvModel
    naive: NaiveBaseline
    btyd: BtydBaseline | None  # None when the data cannot support it (too few repeat customers): logged
    schema: FeatureSchema
    btyd_error: str | None = None


@dataclass
class LtvRunResult:
    run_id: str
    model_uri: str
    version: str
    promoted: bool
    reason: str
    holdout_id: str
    plan: TrainingPlan
    metrics: pd.DataFrame  # rows: ziln and the baselines; columns: metrics

    def summary(self) -> dict[str, Any]:
        """JSON-able (Airflow XCom, CLI)."""
        net = self.metrics.loc[NETWORK]
        return {
            "run_id": self.run_id,
            "version": self.version,
            "promoted": self.promoted,
            "reason": self.reason,
            "holdout_id": self.holdout_id,
            "plan": self.plan.to_dict(),
            "normalized_gini": _json_float(net["normalized_gini"]),
            "spearman": _json_float(net["spearman"]),
            "decile_mape": _json_float(net["decile_mape"]),
            "vwde": _json_float(net["vwde"]),
            "total_error": _json_float(net["total_error"]),
        }


def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


# ------------------------------------------------------------------------------- fitting and evaluating


def fit_models(
    frame: pd.DataFrame, y: np.ndarray, horizon_days: int, schema: FeatureSchema, config: TrainConfig
) -> FittedModels:
    """The network on the schema's columns (validation folds by user inside; with rows of several cutoffs, the
    latest calibrates it out of time), the naive baseline, and BG/NBD + Gamma-Gamma on the same customers'
    order histories."""
    from ltvfeed.training.baselines import BtydBaseline, NaiveBaseline
    from ltvfeed.training.fit import LtvModel

    inputs = as_model_input(frame, schema)
    inputs.insert(0, "user_id", frame["user_id"].to_numpy())
    network = LtvModel(horizon_days, config, categorical_columns=schema.categorical, id_column="user_id")
    network.fit(inputs, y, periods=frame[CUTOFF].to_numpy() if CUTOFF in frame.columns else None)
    btyd, error = None, None
    latest = frame if CUTOFF not in frame.columns else frame[frame[CUTOFF] == frame[CUTOFF].max()]
    try:
        btyd = BtydBaseline(horizon_days).fit(latest)  # the most recent histories, each customer once
    except UserError as exc:
        error = str(exc)
        log.warning("BG/NBD + Gamma-Gamma baseline not fitted: %s", error)
    return FittedModels(network, NaiveBaseline(horizon_days), btyd, schema, error)


def predict_all(models: FittedModels, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each model's predictions (expected_ltv, and prob_return where it has one) for ``frame``'s rows."""
    predictions = {NETWORK: models.network.predict(as_model_input(frame, models.schema))}
    if models.btyd is not None:
        predictions[BTYD] = models.btyd.predict(frame)
    predictions[NAIVE] = models.naive.predict(frame)
    return predictions


def evaluate_all(y: np.ndarray, predictions: dict[str, pd.DataFrame]) -> pd.DataFrame:
    from ltvfeed.training.metrics import evaluate

    if y.sum() <= 0:
        raise UserError("the holdout has no revenue at all: nothing to evaluate a ranking on; use another cutoff")
    return evaluate(y, predictions)


def pyfunc_evaluator(holdout: LabelledFrame, schema: FeatureSchema) -> Callable[[Any], dict[str, float]]:
    """The function the registry applies to the challenger AND the champion: same rows, same metrics.

    The frame carries every ``ltv_model`` feature, so a champion trained on other columns picks its own."""
    from ltvfeed.training.metrics import evaluate

    inputs = as_model_input(holdout.frame, schema).reset_index(drop=True)

    def evaluate_model(model: Any) -> dict[str, float]:
        predicted = model.predict(inputs)
        return {k: float(v) for k, v in evaluate(holdout.y, {"model": predicted}).loc["model"].items()}

    return evaluate_model


def holdout_id(model_name: str, plan: TrainingPlan, holdout: LabelledFrame) -> str:
    return f"{model_name}:h{plan.horizon_days}:holdout={plan.holdout_cutoff}:n={len(holdout)}:{holdout.fingerprint()}"


# --------------------------------------------------------------------------------------------- the run


def prepare_training_data(
    stack: Stack,
    plan: TrainingPlan,
    *,
    also_snapshots: tuple[date, ...] = (),
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Snapshots for every cutoff of the plan and ``also_snapshots`` (dbt builds the missing ones), labels for
    its horizon, the Feast definitions registered, and a check that every cutoff has complete labels (fails
    before any training)."""
    from ltvfeed.features import apply
    from ltvfeed.training.ltv_data import complete_labels
    from ltvfeed.warehouse.extent import data_range
    from ltvfeed.warehouse.ltv_reads import read_labels

    span = data_range(stack.warehouse_dsn)
    if span is None:
        raise UserError("the warehouse has no orders yet: nothing to train on")
    if plan.labels_needed_until > span[1]:  # before any dbt work: say which holdout would do
        raise UserError(
            f"the holdout {plan.holdout_cutoff} needs data until {plan.labels_needed_until} for complete "
            f"{plan.horizon_days}-day labels, but the data ends on {span[1] - timedelta(days=1)}; use a holdout "
            f"cutoff <= {span[1] - timedelta(days=plan.horizon_days)} and training cutoffs before it"
        )
    built = ensure_snapshots(stack, [*plan.cutoffs, *also_snapshots], plan.horizon_days, echo=echo)
    apply(stack)
    labels = complete_labels(
        read_labels(stack.warehouse_dsn, plan.cutoffs, plan.horizon_days), plan.cutoffs, plan.horizon_days
    )
    counts = labels.groupby("cutoff").size()
    return {
        "plan": plan.to_dict(),
        "snapshots_built": [d.isoformat() for d in built],
        "labelled_rows": {c.isoformat(): int(n) for c, n in counts.items()},
    }


def train_ltv(
    stack: Stack,
    plan: TrainingPlan,
    config: LtvRunConfig | None = None,
    *,
    prepare: bool = True,
    echo: Callable[[str], None] | None = None,
) -> LtvRunResult:
    """Run the whole training step for ``plan``; see the module doc. ``prepare=False`` skips the dbt/Feast
    preparation (the DAG runs it as its own task)."""
    config = config or LtvRunConfig()
    if prepare:
        prepare_training_data(stack, plan, echo=echo)
    full_schema = ltv_feature_schema()
    schema = full_schema.without(config.exclude_features)
    _say(echo, f"reading training rows ({plan.describe()}) ...")
    train = labelled_frame(stack, plan.train_cutoffs, plan.horizon_days)
    holdout = labelled_frame(stack, [plan.holdout_cutoff], plan.horizon_days)
    _say(echo, f"fitting on {len(train)} rows, holdout {len(holdout)} rows ...")
    models = fit_models(train.frame, train.y, plan.horizon_days, schema, config.train)
    predictions = predict_all(models, holdout.frame)
    metrics = evaluate_all(holdout.y, predictions)
    hid = holdout_id(config.model_name, plan, holdout)
    return _record_run(stack, plan, config, train, holdout, models, predictions, metrics, hid, full_schema, echo)


def _say(echo: Callable[[str], None] | None, message: str) -> None:
    log.info("%s", message)
    if echo is not None:
        echo(message)


def _record_run(
    stack: Stack,
    plan: TrainingPlan,
    config: LtvRunConfig,
    train: LabelledFrame,
    holdout: LabelledFrame,
    models: FittedModels,
    predictions: dict[str, pd.DataFrame],
    metrics: pd.DataFrame,
    hid: str,
    full_schema: FeatureSchema,
    echo: Callable[[str], None] | None,
) -> LtvRunResult:
    import mlflow

    from ltvfeed.infra.tracking import use_experiment
    from ltvfeed.training.ltv_pyfunc import log_ltv_model
    from ltvfeed.training.registry import register_and_promote

    use_experiment(stack, config.experiment)
    run_name = f"{config.model_name} h{plan.horizon_days} {plan.train_cutoffs[-1]}"
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({"ltv.holdout_id": hid, "ltv.plan": plan.describe(), "ltv.model_name": config.model_name})
        mlflow.log_params(_params(plan, config, train, holdout, models))
        _log_metrics(metrics, models, holdout)
        _log_artifacts(holdout, predictions, metrics, models, train)
        _say(echo, "logging the model and judging it against the champion ...")
        info = log_ltv_model(models.network, models.schema, train.frame)
        outcome = register_and_promote(
            stack,
            info.model_uri,
            config.model_name,
            hid,
            pyfunc_evaluator(holdout, full_schema),
            config.promotion,
            data_through=plan.holdout_cutoff + timedelta(days=plan.horizon_days),
            veto=baseline_veto(metrics, config.baseline_gate),
        )
        decision = outcome.decision
        mlflow.set_tags({"ltv.version": outcome.version, "ltv.promoted": str(decision.promoted)})
    verdict = "champion" if decision.promoted else "not promoted"
    _say(echo, f"{config.model_name} v{outcome.version} registered, {verdict}: {decision.reason}")
    return LtvRunResult(
        run_id=run.info.run_id,
        model_uri=info.model_uri,
        version=outcome.version,
        promoted=decision.promoted,
        reason=decision.reason,
        holdout_id=hid,
        plan=plan,
        metrics=metrics,
    )


def _params(
    plan: TrainingPlan, config: LtvRunConfig, train: LabelledFrame, holdout: LabelledFrame, models: FittedModels
) -> dict[str, Any]:
    report = models.network.report
    params: dict[str, Any] = {
        **plan.params(),
        **{f"train.{k}": v for k, v in asdict(config.train).items()},
        "model_name": config.model_name,
        "n_train_rows": len(train),
        "n_train_users": int(train.frame["user_id"].nunique()),
        "n_holdout_rows": len(holdout),
        "train_rows_per_cutoff": json.dumps(train.meta.get("rows_per_cutoff", {})),
        "n_features": len(models.network.feature_columns),
        "excluded_features": ",".join(config.exclude_features) or "-",
        "btyd_fitted": models.btyd is not None,
    }
    if report is not None:
        params.update(
            {
                "best_epoch": report.best_epoch,
                "epochs_run": sum(len(m.history) for m in report.members) or len(report.history),
                "calibration_source": report.calibration_source,
                "calibration_rows": report.calibration_rows,
            }
        )
    params["btyd_inputs"] = models.network.module.btyd is not None
    if models.btyd_error:
        params["btyd_error"] = models.btyd_error[:500]
    return params


def _decile_mape_noise(models: FittedModels, holdout: LabelledFrame) -> dict[str, float]:
    """The decile MAPE a perfectly specified model would score on this holdout from the noise of one realised
    future alone (:func:`ltvfeed.training.metrics.decile_mape_noise`): the scale to read ``decile_mape`` on."""
    from ltvfeed.training.metrics import decile_mape_noise

    dist = models.network.module.predictive_distribution(as_model_input(holdout.frame, models.schema))
    try:
        noise = decile_mape_noise(dist["prob_return"], dist["mu"], dist["sigma"], draws=100)
    except ValueError as exc:  # fewer users than deciles, or no revenue in any draw
        log.info("decile MAPE noise not computed: %s", exc)
        return {}
    return {
        "decile_mape_noise_median": noise.median,
        "decile_mape_noise_p05": noise.low,
        "decile_mape_noise_p95": noise.high,
    }


def _log_metrics(metrics: pd.DataFrame, models: FittedModels, holdout: LabelledFrame) -> None:
    import mlflow

    values: dict[str, float] = _decile_mape_noise(models, holdout)
    for name, row in metrics.iterrows():
        prefix = "" if name == NETWORK else f"baseline.{name}."
        values.update({f"{prefix}{k}": float(v) for k, v in row.items() if v is not None and math.isfinite(v)})
    baselines = metrics.drop(index=NETWORK)
    if len(baselines):
        values["gini_lift_over_best_baseline"] = float(
            metrics.loc[NETWORK, "normalized_gini"] - baselines["normalized_gini"].max()
        )
    mlflow.log_metrics(values)
    report = models.network.report
    if report is not None:
        for record in report.history:
            mlflow.log_metric("train_loss", record.train_loss, step=record.epoch)
            if record.val_loss is not None and math.isfinite(record.val_loss):
                mlflow.log_metric("val_loss", record.val_loss, step=record.epoch)


def _log_artifacts(
    holdout: LabelledFrame,
    predictions: dict[str, pd.DataFrame],
    metrics: pd.DataFrame,
    models: FittedModels,
    train: LabelledFrame,
) -> None:
    import mlflow

    from ltvfeed.training.metrics import decile_table
    from ltvfeed.training.plots import calibration_plot, decile_chart, gain_chart

    y = holdout.y
    net = predictions[NETWORK]
    with tempfile.TemporaryDirectory(prefix="ltv-run-") as tmp:
        out = Path(tmp)
        gain_chart(y, {name: p["expected_ltv"].to_numpy() for name, p in predictions.items()}, out / "gain_chart.png")
        decile_chart(y, net["expected_ltv"].to_numpy(), out / "decile_chart.png", title="ZILN: holdout deciles")
        calibration_plot(y, net["expected_ltv"].to_numpy(), out / "calibration.png", prob_return=net["prob_return"])
        csv_output.write_csv(metrics, out / "holdout_metrics.csv", index_label="model")
        tables = [decile_table(y, p["expected_ltv"].to_numpy()).assign(model=name) for name, p in predictions.items()]
        csv_output.write_csv(pd.concat(tables), out / "holdout_deciles.csv", index_label="decile")
        (out / "features.json").write_text(
            json.dumps(
                {
                    "used": models.network.feature_columns,
                    "numeric": list(models.schema.numeric),
                    "categorical": list(models.schema.categorical),
                    "rows_per_cutoff": train.meta.get("rows_per_cutoff", {}),
                },
                indent=2,
            )
        )
        mlflow.log_artifacts(str(out), artifact_path="evaluation")

"""A backtest as one MLflow run in experiment ``ltv_backtest``, so backtests of a shop (its log file or its
warehouse) can be compared over time beside the training runs: the source and folds as params, every
(cutoff, model, metric) as a metric, the report (html, csv, charts) as artifacts."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ltvfeed.training.ltv_backtest import REPORT_METRICS, BacktestFold, report_files

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack

EXPERIMENT = "ltv_backtest"
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_\-. /]")  # MLflow's metric and param key characters


@dataclass(frozen=True)
class BacktestRun:
    run_id: str
    experiment_id: str
    artifact_uri: str


def metric_key(*parts: str) -> str:
    """``part.part.part`` with every character MLflow refuses in a key replaced by ``_``."""
    return _NOT_ALLOWED.sub("_", ".".join(parts))


def backtest_metrics(folds: Sequence[BacktestFold]) -> dict[str, float]:
    """``<cutoff>.<model>.<metric>`` for every finite report metric, and each fold's customer counts (an AUC a
    model cannot have, e.g. naive's, is left out rather than logged as NaN)."""
    values: dict[str, float] = {}
    for fold in folds:
        cutoff = fold.cutoff.isoformat()
        values[metric_key(cutoff, "n_train")] = float(fold.n_train)
        values[metric_key(cutoff, "n_holdout")] = float(fold.n_holdout)
        for model, row in fold.metrics[list(REPORT_METRICS)].iterrows():
            for metric, value in row.items():
                if value is not None and math.isfinite(float(value)):
                    values[metric_key(cutoff, str(model), str(metric))] = float(value)
    return values


def log_backtest(
    stack: Stack, folds: Sequence[BacktestFold], report_dir: str | Path, source: str, seed: int, n_customers: int
) -> BacktestRun:
    """One run in :data:`EXPERIMENT` for a backtest whose report was written to ``report_dir``."""
    import mlflow

    from ltvfeed.infra.tracking import use_experiment

    experiment_id = use_experiment(stack, EXPERIMENT)
    horizon_days = folds[0].horizon_days
    cutoffs = ",".join(f.cutoff.isoformat() for f in folds)
    with mlflow.start_run(run_name=f"backtest h{horizon_days} {cutoffs}") as run:
        mlflow.log_params(
            {
                "source": source,
                "cutoffs": cutoffs,
                "horizon_days": horizon_days,
                "seed": seed,
                "n_customers": n_customers,
            }
        )
        mlflow.log_metrics(backtest_metrics(folds))
        for path in report_files(folds, report_dir):
            mlflow.log_artifact(str(path))
        artifact_uri = mlflow.get_artifact_uri()
    return BacktestRun(run.info.run_id, experiment_id, artifact_uri)

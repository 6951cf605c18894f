"""One experiment's report end to end: per-user metrics (the dbt mart ``marts.experiment_user_metrics``, or a
CSV override) → :func:`ltvfeed.experiments.analysis.analyse` → self-contained HTML under the state dir →
an MLflow run in experiment :data:`MLFLOW_EXPERIMENT` (the page as artifact, the primary lift and p as
metrics). Used by ``ltvfeed experiments report`` and the ``experiment_report`` DAG."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.experiments.analysis import USER_COLUMNS, Analysis, analyse
from ltvfeed.experiments.registry import ExperimentRecord
from ltvfeed.experiments.report import cumulative_lifts, render_html
from ltvfeed.warehouse.experiment_reads import experiment_user_metrics

MLFLOW_EXPERIMENT = "ab_reports"


@dataclass(frozen=True)
class Readout:
    name: str
    path: Path
    analysis: Analysis
    mlflow_run_id: str | None = None


def report_path(state_dir: Path, name: str) -> Path:
    return state_dir / "experiments" / f"{name}.html"


def load_user_metrics(dsn: str, name: str) -> pd.DataFrame:
    """The experiment's rows of the mart; a missing mart or an experiment nobody was exposed to is an error."""
    users = experiment_user_metrics(dsn, name, USER_COLUMNS)
    numeric = [c for c in USER_COLUMNS if c not in ("arm", "user_id")]
    users[numeric] = users[numeric].astype(float)  # null predictions: NaN, not object columns
    return users


def read_metrics_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, parse_dates=["first_exposed_on"])
    except (OSError, ValueError) as exc:
        raise UserError(f"--metrics {path}: {exc}") from exc


def write_report(record: ExperimentRecord, users: pd.DataFrame, path: Path, *, fixed_horizon: bool = False) -> Readout:
    """Analyse and write the HTML page; bad metrics are a one-line :class:`UserError`."""
    e = record.experiment

    def run(frame: pd.DataFrame) -> Analysis:
        return analyse(
            frame,
            control=e.arms[0].name,
            weights={a.name: a.weight for a in e.arms},
            primary=e.primary_metric,
            secondary=e.secondary_metrics,
            guardrails=e.guardrail_metrics,
            sequential=not fixed_horizon,
        )

    try:
        analysis = run(users)
    except ValueError as exc:
        raise UserError(f"experiment {e.name}: {exc}") from exc
    lifts = cumulative_lifts(users, run, e.primary_metric) if "first_exposed_on" in users else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(e.name, analysis, lifts))
    return Readout(e.name, path, analysis)


def report_metrics(analysis: Analysis) -> dict[str, float]:
    """What the MLflow run records: SRM p, users per arm, and per treatment arm the primary metric's relative
    lift, its interval and (Holm-adjusted) p. Non-finite values are left out (MLflow rejects NaN)."""
    out: dict[str, float] = {"srm_p_value": analysis.srm.p_value}
    out |= {f"users_{arm}": float(n) for arm, n in analysis.users.items()}
    for r in analysis.results:
        if r.role != "primary":
            continue
        lo, hi = r.effect.relative_ci
        out |= {
            f"{r.arm}_lift": r.effect.relative,
            f"{r.arm}_lift_low": lo,
            f"{r.arm}_lift_high": hi,
            f"{r.arm}_p_value": r.effect.p_value,
            f"{r.arm}_adjusted_p_value": r.adjusted_p,
        }
    return {k: float(v) for k, v in out.items() if math.isfinite(v)}


def log_to_mlflow(stack, readout: Readout, record: ExperimentRecord) -> str:
    """One MLflow run per report under :data:`MLFLOW_EXPERIMENT`; returns its run id."""
    import mlflow

    from ltvfeed.infra.tracking import use_experiment

    use_experiment(stack, MLFLOW_EXPERIMENT)
    e = record.experiment
    with mlflow.start_run(run_name=e.name) as run:
        mlflow.set_tags({"ab_experiment": e.name, "status": record.status, "verdict": readout.analysis.verdict[:5000]})
        mlflow.log_params({"primary_metric": e.primary_metric, "arms": ",".join(a.name for a in e.arms)})
        mlflow.log_metrics(report_metrics(readout.analysis))
        mlflow.log_artifact(str(readout.path))
    return run.info.run_id


def report(
    stack, name: str, *, metrics_csv: Path | None = None, out: Path | None = None, fixed_horizon: bool = False
) -> Readout:
    """The whole read-out of one registered experiment (mart unless ``metrics_csv``), logged to MLflow."""
    from ltvfeed.experiments import registry

    record = registry.get(stack.warehouse_dsn, name)
    users = read_metrics_csv(metrics_csv) if metrics_csv else load_user_metrics(stack.warehouse_dsn, name)
    readout = write_report(
        record, users, out or report_path(stack.settings.state_dir, name), fixed_horizon=fixed_horizon
    )
    run_id = log_to_mlflow(stack, readout, record)
    return Readout(readout.name, readout.path, readout.analysis, run_id)

"""What the ``experiment_report`` DAG runs: the running experiments, the dbt build of their per-user metrics,
and one report per experiment (:mod:`ltvfeed.experiments.readout`)."""

from __future__ import annotations

from typing import Any

from ltvfeed.infra.stack import Stack, up
from ltvfeed.settings import Settings

METRICS_SELECT = "+experiment_user_metrics"  # the mart and the staging views it reads


def running_experiments(settings: Settings) -> list[str]:
    """Names of the running experiments (an empty list maps to no report tasks)."""
    from ltvfeed.experiments import registry

    return [e.name for e in registry.running(up(settings).warehouse_dsn)]


def build_metrics(settings: Settings, stack: Stack | None = None) -> None:
    """``dbt build`` of marts.experiment_user_metrics (a plain table: rebuilt from the exposure log)."""
    from ltvfeed.dbt_runner import build

    build(stack or up(settings), None, None, METRICS_SELECT)


def report_experiment(settings: Settings, name: str, stack: Stack | None = None) -> dict[str, Any]:
    """The experiment's HTML report under the state dir, logged to MLflow; returns what the task shows."""
    from ltvfeed.experiments.readout import report

    readout = report(stack or up(settings), name)
    return {
        "experiment": name,
        "verdict": readout.analysis.verdict,
        "report": str(readout.path),
        "mlflow_run_id": readout.mlflow_run_id,
        "users": readout.analysis.users,
    }

"""Where MLflow keeps runs, registered models and artifacts: the one place that decides it.

Every caller — training, DAG tasks, serving, tests and the tracking server — takes the locations from here, so
they all see the same runs and the same registry. In-process code talks to the PostgreSQL backend
(``stack.mlflow_dsn``) directly, so training and serving never need a tracking server to be up; the server
started by ``ltvfeed mlflow ui`` reads the same database. Artifacts are plain local files under
``state_dir/mlartifacts`` for both.

MLflow must never reach the internet from here: telemetry is switched off before MLflow is imported (and the
client it may already have made is dropped).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ltvfeed.db import sqlalchemy_url
from ltvfeed.errors import UserError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ltvfeed.infra.stack import Stack
    from ltvfeed.settings import Settings

# MLflow >= 3.2 sends usage data by default; both switches are read by mlflow.telemetry.
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(kind: str, name: str) -> str:
    """Experiment and model names become folder names and filter strings: keep them plain."""
    if not _NAME.match(name):
        raise UserError(f"{kind} name {name!r} is not allowed: use letters, digits, '_', '.', '-' (max 128)")
    return name


def mlflow_env() -> dict[str, str]:
    """Environment variables any process running MLflow (including child processes) must have."""
    return dict(TELEMETRY_OFF)


def disable_telemetry() -> None:
    """Switch MLflow telemetry off in this process, also when MLflow was imported before."""
    os.environ.update(TELEMETRY_OFF)
    if "mlflow" in sys.modules:
        from mlflow.telemetry import set_telemetry_client

        set_telemetry_client()  # re-reads the switches: drops any client made at import


def tracking_uri(stack: Stack) -> str:
    """Tracking and registry URI: the MLflow backend database as a SQLAlchemy URL."""
    return sqlalchemy_url(stack.mlflow_dsn)


def artifact_root(settings: Settings) -> Path:
    """Folder holding every run's and model's artifacts (the tracking server serves the same folder)."""
    return settings.state_dir / "mlartifacts"


def configure_mlflow(stack: Stack) -> MlflowClient:
    """Point MLflow (fluent API and a client) at this stack; call before any other MLflow use.

    Sets the process-wide tracking and registry URIs because ``mlflow.start_run``, ``log_model`` and
    ``pyfunc.load_model("models:/...")`` read them; returns a client bound to the same URIs explicitly.
    """
    disable_telemetry()
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(stack)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def use_experiment(stack: Stack, name: str) -> str:
    """Make ``name`` the active experiment (created with its artifacts under the state dir); returns its id.

    The artifact location is set explicitly because MLflow's in-process default would be ``./mlruns`` of
    whatever the working directory happens to be.
    """
    check_name("experiment", name)
    client = configure_mlflow(stack)
    import mlflow

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = artifact_root(stack.settings) / name
        location.mkdir(parents=True, exist_ok=True)
        experiment_id = client.create_experiment(name, artifact_location=location.as_uri())
    else:
        if not experiment.artifact_location.startswith(("file:", "/")):
            raise UserError(
                f"experiment {name!r} stores artifacts at {experiment.artifact_location}, which only a running "
                "tracking server can reach; use another experiment name for in-process training"
            )
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id

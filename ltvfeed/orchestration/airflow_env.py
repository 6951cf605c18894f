"""The environment every Airflow process of ours runs with (scheduler, ``dags test``, the UI)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ltvfeed.infra.stack import Stack
from ltvfeed.settings import project_root

SQLITE_CONNECT_ARGS = "ltvfeed.orchestration.airflow_sqlite.CONNECT_ARGS"
# Seconds a task waits for each answer of the execution API (Airflow's default: 5, then 5 tries within about a
# minute). On a loaded 2-core machine the api-server answered nothing for a minute and a clean-clone CI's dbt
# build task failed with "API_SERVER_ERROR ... ReadTimeout" though dbt had passed.
EXECUTION_API_TIMEOUT_S = "60"


def airflow_env(stack: Stack) -> dict[str, str]:
    """os.environ + the stack's variables + a local Airflow (SQLite metadata under the state dir)."""
    home = stack.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    venv_bin = str(Path(sys.executable).parent)
    conn = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    sqlite = {}
    if conn.startswith("sqlite"):  # a longer lock wait (airflow_sqlite.py), unless the user configured one
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"):
            sqlite[key] = os.environ.get(key, SQLITE_CONNECT_ARGS)
    return {
        **os.environ,
        **stack.env(),
        **sqlite,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project_root() / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__CORE__EXECUTOR": os.environ.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": conn,
        "AIRFLOW__API__PORT": str(stack.settings.airflow_port),
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": os.environ.get(
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", EXECUTION_API_TIMEOUT_S
        ),
        "NO_COLOR": "1",
        # `airflow standalone` spawns `airflow` sub-processes: the venv's bin must come first on PATH.
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
    }

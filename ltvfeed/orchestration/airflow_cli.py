"""Run Airflow's own CLI against our local Airflow home, with the stack's environment."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

from ltvfeed.errors import UserError
from ltvfeed.infra.stack import Stack
from ltvfeed.orchestration.airflow_env import airflow_env


def airflow_executable() -> str:
    return str(Path(sys.executable).parent / "airflow")


def run_airflow(stack: Stack, args: list[str], check: bool = True) -> int:
    """``airflow ARGS`` with our environment; output streams to the terminal."""
    proc = subprocess.run([airflow_executable(), *args], env=airflow_env(stack))
    if check and proc.returncode != 0:
        raise UserError(f"`airflow {' '.join(args)}` failed with exit code {proc.returncode} (see its output above)")
    return proc.returncode


def ensure_metadata_db(stack: Stack) -> None:
    """``airflow db migrate`` once per Airflow version (it is idempotent but takes seconds)."""
    from importlib.metadata import version

    stamp = stack.airflow_home / ".migrated"
    want = version("apache-airflow")
    if stamp.exists() and stamp.read_text() == want:
        return
    proc = subprocess.run(
        [airflow_executable(), "db", "migrate"], env=airflow_env(stack), capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise UserError(f"`airflow db migrate` failed (exit {proc.returncode}):\n{tail}")
    stamp.write_text(want)


def test_dag(stack: Stack, dag_id: str, as_of: date, conf: dict[str, object] | None = None):
    """Run one DAG run in-process (``airflow dags test``), Airflow's output on the terminal and in a log file;
    raises when a task failed or no task ran (see :func:`ltvfeed.orchestration.dag_test.run_dag_test`)."""
    from ltvfeed.orchestration.dag_test import run_dag_test

    return run_dag_test(stack, dag_id, as_of, conf)

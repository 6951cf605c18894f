"""Airflow's scheduler with the libraries our tasks use already imported (``python -m
ltvfeed.orchestration.warm_scheduler [scheduler options]``).

On Linux the LocalExecutor forks its workers from the scheduler and the task runner forks each task from a worker
(Airflow freezes the garbage collector around the fork so that the pages stay shared). A module the scheduler has
imported is therefore already in every task process, while a module it has not is imported again by each task:
Feast takes ~6 s of CPU to import (typeguard instruments its classes), Great Expectations ~4 s, MLflow and torch
~2 s each. An ``ltv_pipeline`` run is ~50 task processes, so on a two-core machine those imports cost minutes per
run. Importing them once here (when the scheduler starts; no library starts a thread on import, so forking stays
safe) leaves each task its own work only. dbt is not among them: every dbt invocation of ours (Cosmos' watcher
producer, ``ltvfeed.dbt_runner``) is a process of its own.

A library that fails to import is skipped with a warning: the task that needs it then fails with its own error,
and the scheduler still runs the others.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Sequence

# What task code imports at run time (the DAG files import little, and ltvfeed imports these lazily).
TASK_IMPORTS = (
    "pandas",
    "sqlalchemy",
    "psycopg",
    "redis",
    "cosmos.operators.local",
    "great_expectations",
    "feast",
    "feast.infra.online_stores.redis",
    "feast.infra.offline_stores.contrib.postgres_offline_store.postgres",
    "mlflow",
    "torch",
    "ltvfeed.orchestration.tasks",
    "ltvfeed.orchestration.ltv_tasks",
    "ltvfeed.orchestration.feed_tasks",
    "ltvfeed.orchestration.feature_tasks",
    "ltvfeed.orchestration.propensity_tasks",
    "ltvfeed.orchestration.experiment_tasks",
    "ltvfeed.quality",
    "ltvfeed.features",
    "ltvfeed.training.ltv_run",
    "ltvfeed.training.ltv_scoring",
    "ltvfeed.training.propensity.train",
    "ltvfeed.serving.generation",
)

log = logging.getLogger(__name__)


def scheduler_command(*options: str) -> list[str]:
    """The argv that starts the warm scheduler (in place of ``airflow scheduler OPTIONS``)."""
    return [sys.executable, "-m", __name__, *options]


def preload(modules: Sequence[str] = TASK_IMPORTS) -> list[str]:
    """Import ``modules``; returns those that failed (each logged)."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a library a task needs decides that task, not the scheduler
            log.warning("warm scheduler: %s not preloaded (%s: %s)", name, type(exc).__name__, exc)
            failed.append(name)
    return failed


def main(options: Sequence[str]) -> None:
    preload()
    if threading.active_count() > 1:  # a fork copies only this thread: a lock another one holds stays held
        log.warning("warm scheduler: a preloaded library started threads: %s", threading.enumerate())
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "scheduler", *options]
    airflow_main()


if __name__ == "__main__":
    main(sys.argv[1:])

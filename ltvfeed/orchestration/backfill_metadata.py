"""Read-only queries on Airflow's metadata database for :mod:`ltvfeed.orchestration.backfill` and
:mod:`ltvfeed.orchestration.dag_test`.

Waiting on a backfill means polling run states every few seconds; an ``airflow`` CLI call costs seconds of CPU
(it imports Airflow), a query costs nothing. Only reads, only long-stable tables (backfill, dag_run,
task_instance, dag, job); everything that changes state goes through Airflow's CLI. SQLite may be briefly
locked by the scheduler's writes: reads are retried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FINISHED = frozenset({"success", "failed"})


@dataclass(frozen=True)
class TaskRun:
    """One task instance of a DAG run (a mapped task has one per map index)."""

    task_id: str
    map_index: int
    state: str | None
    seconds: float | None

    @property
    def label(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"

    @property
    def ran(self) -> bool:
        """Started at all: a run whose tasks never left 'no status' did nothing."""
        return self.state not in (None, "removed", "scheduled", "queued") or self.seconds is not None


@dataclass(frozen=True)
class BackfillRun:
    run_id: str
    logical_date: datetime  # UTC
    state: str

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def _utc(value: Any) -> datetime:
    """SQLite returns naive UTC datetimes (or strings); PostgreSQL aware ones."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Metadata:
    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(url)

    def _rows(self, query: str, **params: Any) -> list[Any]:
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        for attempt in range(10):
            try:
                with self.engine.connect() as conn:
                    return list(conn.execute(text(query), params))
            except OperationalError as exc:  # "database is locked" while the scheduler commits
                if "locked" not in str(exc) or attempt == 9:
                    raise
                time.sleep(0.5)
        return []

    def scheduler_alive(self, within_s: float = 60) -> bool:
        """A scheduler job that is running and heartbeated recently (another scheduler on this home)."""
        rows = self._rows(
            "select latest_heartbeat from job where job_type = 'SchedulerJob' and state = 'running'"
            " and latest_heartbeat is not null"
        )
        recent = datetime.now(UTC) - timedelta(seconds=within_s)
        return any(_utc(r[0]) > recent for r in rows)

    def dag_exists(self, dag_id: str) -> bool:
        return bool(self._rows("select 1 from serialized_dag where dag_id = :d", d=dag_id))

    def is_paused(self, dag_id: str) -> bool:
        rows = self._rows("select is_paused from dag where dag_id = :d", d=dag_id)
        return bool(rows[0][0]) if rows else True

    def latest_backfill(self, dag_id: str, since: datetime) -> int | None:
        rows = self._rows("select id, created_at from backfill where dag_id = :d order by id desc limit 1", d=dag_id)
        if not rows or _utc(rows[0][1]) < since - timedelta(seconds=5):
            return None
        return int(rows[0][0])

    def active_backfills(self, dag_id: str) -> list[int]:
        """Backfills of the DAG not marked complete yet (the scheduler marks them within 30 s of their end)."""
        rows = self._rows("select id from backfill where dag_id = :d and completed_at is null order by id", d=dag_id)
        return [int(r[0]) for r in rows]

    def backfill_completed(self, backfill_id: int) -> bool:
        rows = self._rows("select completed_at from backfill where id = :b", b=backfill_id)
        return bool(rows) and rows[0][0] is not None

    def runs(self, backfill_id: int) -> list[BackfillRun]:
        rows = self._rows(
            "select run_id, logical_date, state from dag_run where backfill_id = :b order by logical_date",
            b=backfill_id,
        )
        return [BackfillRun(r[0], _utc(r[1]), str(r[2])) for r in rows]

    def failed_tasks(self, dag_id: str, run_ids: list[str]) -> dict[str, list[str]]:
        """run_id -> task ids in failed or upstream_failed state."""
        found: dict[str, list[str]] = {}
        for run_id in run_ids:
            rows = self._rows(
                "select task_id, state from task_instance where dag_id = :d and run_id = :r"
                " and state in ('failed', 'upstream_failed') order by task_id",
                d=dag_id,
                r=run_id,
            )
            found[run_id] = [f"{task} ({state})" for task, state in rows]
        return found

    def runs_created_since(self, dag_id: str, since: datetime) -> list[tuple[int, str, str]]:
        """(id, run_id, state) of the DAG's runs created at or after ``since``, oldest first. By time, not id:
        SQLite reuses the id of a deleted newest run (``dags test`` replaces the run of the same date)."""
        rows = self._rows("select id, run_id, state, created_at from dag_run where dag_id = :d order by id", d=dag_id)
        found = [(int(r[0]), str(r[1]), str(r[2]), _utc(r[3])) for r in rows if r[3] is not None]
        return [(pk, run_id, state) for pk, run_id, state, at in sorted(found, key=lambda r: r[3]) if at >= since]

    def task_runs(self, dag_id: str, run_id: str) -> list[TaskRun]:
        """The run's task instances in the order they started (never started ones last)."""
        rows = self._rows(
            "select task_id, map_index, state, duration, start_date from task_instance"
            " where dag_id = :d and run_id = :r order by start_date is null, start_date, task_id, map_index",
            d=dag_id,
            r=run_id,
        )
        return [TaskRun(r[0], int(r[1]), r[2], None if r[3] is None else float(r[3])) for r in rows]

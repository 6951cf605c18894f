"""One DAG run for one cutoff, in-process (``airflow dags test``), watched through Airflow's metadata database.

Airflow reports ``state=success`` for a run in which no task ran (a logical date before a task's start date, say)
and prints a failed task's reason somewhere in thousands of log lines. So the run's task instances are read after
it: a run that ran no task is an error (and is deleted, so it does not block a backfill of the same cutoff), a
failed run is an error naming the failed task and its exception in one line. While it runs, each task that
finishes is reported (a line with its state and duration); Airflow's own output goes to a log file
(``quiet``) or to the terminal as well.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO

from ltvfeed.errors import UserError
from ltvfeed.infra.stack import Stack
from ltvfeed.orchestration.airflow_cli import airflow_executable, ensure_metadata_db
from ltvfeed.orchestration.airflow_env import airflow_env
from ltvfeed.orchestration.backfill_metadata import Metadata, TaskRun

_POLL_S = 2.0
FAILED = ("failed", "upstream_failed")
# "UserError: message", "ltvfeed.errors.UserError: message", "exc_type': 'UserError', 'exc_value': 'message'"
_EXCEPTION = re.compile(r"(?:^|[\s'\"(])((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Failure)): (.+)$")
_EXC_DETAIL = re.compile(
    r"exc_type['\"]?\s*:\s*['\"](\w+)['\"]\s*,\s*['\"]?exc_value['\"]?\s*:\s*['\"](.+?)(?<!\\)['\"]\s*[,}]"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# dbt's end-of-run summary: "Failure in test <name> (<file>)" / "Database Error in model <name> (<file>)", then
# dbt's message on the next line ("HH:MM:SS  <message>", in plain or JSON log lines)
_DBT_FAILURE = re.compile(r"\b((?:Failure|(?:\w+ )?Error) in \w+ \w+ \([^)]+\))")
_DBT_MESSAGE = re.compile(r"\b\d\d:\d\d:\d\d\s+(\S.*?)(?:\s+\[[\w.]+\]\s+loc=\S+|\"\s*,.*)?$")


@dataclass(frozen=True)
class DagTestResult:
    dag_id: str
    as_of: date
    run_id: str
    tasks: tuple[TaskRun, ...]
    seconds: float
    log: Path | None


def run_log_path(stack: Stack, dag_id: str, as_of: date) -> Path:
    """Where Airflow's output of one run goes: under the state dir, one file per run."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return stack.settings.state_dir / "logs" / "runs" / f"{dag_id}_{as_of.isoformat()}_{stamp}.log"


def failure_reason(lines: list[str]) -> str | None:
    """dbt's first failure when the run has a dbt summary (the dbt task's exception only says that dbt failed),
    else the last exception named in Airflow's output, as ``Type: message`` on one line."""
    dbt = dbt_failure(lines)
    if dbt:
        return dbt
    for raw in reversed(lines):
        line = _ANSI.sub("", raw).strip()
        detail = _EXC_DETAIL.search(line)
        if detail:
            return f"{detail.group(1)}: {detail.group(2)}"
        found = _EXCEPTION.search(line)
        if found and "Traceback" not in line and not found.group(1).startswith("airflow."):
            return f"{found.group(1).rsplit('.', 1)[-1]}: {found.group(2).strip()}"
    return None


def dbt_failure(lines: list[str]) -> str | None:
    """``dbt: <first failure in dbt's summary>: <its message>``, with how many more failed; None without one."""
    failures: dict[str, str] = {}
    for at, raw in enumerate(lines):
        found = _DBT_FAILURE.search(_ANSI.sub("", raw))
        if found and found.group(1) not in failures:
            message = _DBT_MESSAGE.search(_ANSI.sub("", lines[at + 1]).strip()) if at + 1 < len(lines) else None
            failures[found.group(1)] = message.group(1) if message else ""
    if not failures:
        return None
    (first, message), more = next(iter(failures.items())), len(failures) - 1
    return f"dbt: {first}{': ' + message if message else ''}" + (f" (and {more} more)" if more else "")


def task_attempt_logs(airflow_home: Path, dag_id: str, run_id: str, task_id: str) -> list[Path]:
    """A scheduler-run task's log files (backfills, the UI), one per attempt, oldest first."""
    folder = airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return sorted(folder.glob("attempt=*.log"), key=lambda p: int(p.stem[8:]) if p.stem[8:].isdigit() else 0)


def task_failure_reason(airflow_home: Path, dag_id: str, run_id: str, task_id: str) -> str | None:
    """The exception of a task's latest attempt, from its log file (scheduler-run tasks: backfills, the UI)."""
    attempts = task_attempt_logs(airflow_home, dag_id, run_id, task_id)
    if not attempts:
        return None
    return failure_reason(attempts[-1].read_text(errors="replace").splitlines())


def _pump(stream: IO[str], sinks: list[IO[str]], tail: deque[str]) -> None:
    for line in stream:
        tail.append(line)
        for sink in sinks:
            sink.write(line)
            sink.flush()


def format_task(task: TaskRun) -> str:
    took = "" if task.seconds is None else f"{task.seconds:7.1f} s"
    return f"  {task.label:44} {task.state or 'not run':16} {took}"


def run_dag_test(
    stack: Stack,
    dag_id: str,
    as_of: date,
    conf: dict[str, object] | None = None,
    *,
    quiet: bool = False,
    echo: Callable[[str], None] | None = None,
) -> DagTestResult:
    """Run ``dag_id`` for ``as_of``; returns its tasks with their durations. Raises :class:`UserError` when the run
    failed (naming the failed task and its exception) or ran no task. ``quiet``: Airflow's output only to the log
    file (always written, path in the result and in errors); ``echo`` receives a line per finished task."""
    ensure_metadata_db(stack)
    env = airflow_env(stack)
    meta = Metadata(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    before = datetime.now(UTC) - timedelta(seconds=2)  # runs created from now on are this one's
    args = [airflow_executable(), "dags", "test", dag_id, as_of.isoformat()]
    if conf:
        args += ["--conf", json.dumps(conf)]
    log = run_log_path(stack, dag_id, as_of)
    log.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=2000)
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert proc.stdout is not None
        pump = threading.Thread(target=_pump, args=(proc.stdout, [out] if quiet else [out, sys.stdout], tail))
        pump.start()
        reported: set[str] = set()
        try:
            while proc.poll() is None:
                time.sleep(_POLL_S)
                _report_finished(meta, dag_id, before, reported, echo)
        except BaseException:  # Ctrl-C: do not leave the run's process behind
            proc.terminate()
            raise
        finally:
            proc.wait()
            pump.join()
            with contextlib.suppress(Exception):  # best effort: never hide how the run itself ended
                _release_leases(stack, meta, dag_id, before)
    _report_finished(meta, dag_id, before, reported, echo)
    seconds = time.monotonic() - started
    runs = meta.runs_created_since(dag_id, before)
    reason = failure_reason(list(tail))
    if not runs:
        raise UserError(
            f"`airflow dags test {dag_id} {as_of}` created no run (exit {proc.returncode})"
            f"{': ' + reason if reason else ''} (full log: {log})"
        )
    run_pk, run_id, state = runs[-1]
    tasks = tuple(meta.task_runs(dag_id, run_id))
    if not any(t.ran for t in tasks):
        _delete_run(env, run_pk)
        raise UserError(
            f"DAG {dag_id} run for {as_of} ran no task (run state {state}, {len(tasks)} task(s) never started); "
            f"the empty run was deleted (full log: {log})"
        )
    failed = [t for t in tasks if t.state == "failed"] or [t for t in tasks if t.state in FAILED]
    if proc.returncode != 0 or state != "success" or failed:
        where = f"in task {', '.join(t.label for t in failed)}" if failed else f"(run state {state})"
        raise UserError(f"DAG {dag_id} run for {as_of} failed {where}: {reason or 'see the log'} (full log: {log})")
    return DagTestResult(dag_id, as_of, run_id, tasks, seconds, log)


def _release_leases(stack: Stack, meta: Metadata, dag_id: str, before: datetime) -> None:
    """The warehouse lease of this run, given back however it ended (a run stopped by Ctrl-C never reaches its
    ``release_warehouse`` task, and would keep the next cutoff waiting)."""
    from ltvfeed.orchestration.tasks import lease_holder
    from ltvfeed.warehouse.lease import release

    for _, run_id, _ in meta.runs_created_since(dag_id, before):
        release(stack.warehouse_dsn, lease_holder(dag_id, run_id))


def _report_finished(
    meta: Metadata, dag_id: str, before: datetime, reported: set[str], echo: Callable[[str], None] | None
) -> None:
    if echo is None:
        return
    try:
        runs = meta.runs_created_since(dag_id, before)
        tasks = meta.task_runs(dag_id, runs[-1][1]) if runs else []
    except Exception:  # the database is busy or not created yet: report on the next poll
        return
    for task in tasks:
        if task.state in ("success", "skipped", *FAILED) and task.label not in reported:
            reported.add(task.label)
            echo(format_task(task))


def _delete_run(env: dict[str, str], run_pk: int) -> None:
    """Delete a dag run (and, through Airflow's ORM cascades, its task instances)."""
    code = (
        "import sys\nfrom airflow.models.dagrun import DagRun\nfrom airflow.utils.session import create_session\n"
        "with create_session() as s:\n    run = s.get(DagRun, int(sys.argv[1]))\n    run and s.delete(run)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(run_pk)], env=env, check=False, capture_output=True)

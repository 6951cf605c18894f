"""Real Airflow backfills on this machine: ``airflow backfill create`` plus the components that execute it.

In Airflow 3 a backfill only creates queued DAG runs; the scheduler runs them (LocalExecutor here) and every
task reports to the api-server's execution API. ``airflow dags test`` cannot run them, so :func:`run_backfill`
starts what is needed against our Airflow home (SQLite metadata, see :mod:`airflow_env`): the api-server (the
execution API only) and a scheduler that creates no runs of its own (``use_job_schedule = False``: no scheduled or
asset-triggered runs while the DAG is unpaused for the backfill). DAG files are serialised once beforehand
(``airflow dags reserialize``) instead of running a DAG processor. It creates the backfill, waits for its runs,
pauses the DAG again if it was paused, stops the components and raises naming the failed runs and tasks.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ltvfeed.errors import UserError
from ltvfeed.infra.stack import Stack
from ltvfeed.orchestration.airflow_cli import airflow_executable, ensure_metadata_db
from ltvfeed.orchestration.airflow_env import airflow_env
from ltvfeed.orchestration.backfill_metadata import BackfillRun, Metadata
from ltvfeed.orchestration.warm_scheduler import scheduler_command

log = logging.getLogger(__name__)

REPROCESS = ("none", "completed", "failed")  # airflow backfill create --reprocess-behavior
_POLL_S = 5.0
SQLITE_LOCKED = "database is locked"  # sqlite3's error for a lock it did not get (after its wait, or at once)
LOCK_RETRIES = 3
LOCK_PAUSE_S = 10.0


@dataclass(frozen=True)
class BackfillResult:
    backfill_id: int
    runs: tuple[BackfillRun, ...]  # by logical date

    @property
    def as_of_dates(self) -> list[date]:
        return [r.logical_date.date() for r in self.runs]


def run_backfill(
    stack: Stack,
    dag_id: str,
    start: date,
    end: date,
    *,
    conf: dict[str, Any] | None = None,
    reprocess: str = "none",
    timeout_s: float = 3600,
    echo: Callable[[str], None] | None = None,
) -> BackfillResult:
    """Backfill ``dag_id`` over logical dates in [start, end] (one run at a time) and wait until every run has
    finished. Raises :class:`UserError` when a run failed or the timeout passed (components are stopped)."""
    if reprocess not in REPROCESS:
        raise UserError(f"reprocess must be one of {', '.join(REPROCESS)}, got {reprocess!r}")
    if end < start:
        raise UserError(f"the backfill ends ({end}) before it starts ({start})")
    say = echo or (lambda _m: None)
    ensure_metadata_db(stack)
    port = _free_port()
    env = backfill_env(stack, port)
    meta = Metadata(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    if meta.scheduler_alive():
        raise UserError(
            f"a scheduler is already running on {stack.airflow_home}: it would run this backfill too. Stop it, or "
            f"create the backfill there: ltvfeed airflow backfill create --dag-id {dag_id} ..."
        )
    say("serialising the DAG files (airflow dags reserialize) ...")
    _airflow(env, ["dags", "reserialize"], stack)
    if not meta.dag_exists(dag_id):
        raise UserError(f"no DAG {dag_id!r} in {env['AIRFLOW__CORE__DAGS_FOLDER']} (or it failed to import)")
    was_paused = meta.is_paused(dag_id)
    logs = stack.airflow_home / "logs" / "backfill"
    with _components(env, port, logs, say) as check_alive:
        if was_paused:
            _airflow(env, ["dags", "unpause", dag_id], stack)
        try:
            for earlier in meta.active_backfills(dag_id):  # Airflow allows one at a time: let it finish first
                say(f"an earlier backfill ({earlier}) of {dag_id} is unfinished: running it to its end first ...")
                _wait(meta, dag_id, earlier, timeout_s, check_alive, say)
            created = datetime.now(UTC)
            args = ["backfill", "create", "--dag-id", dag_id, "--from-date", f"{start.isoformat()}T00:00:00+00:00"]
            args += ["--to-date", f"{end.isoformat()}T23:59:59+00:00"]  # every run on the end day too
            args += ["--max-active-runs", "1", "--reprocess-behavior", reprocess]
            if conf:
                args += ["--dag-run-conf", json.dumps(conf)]
            say(f"creating the backfill of {dag_id} for {start} .. {end} ...")
            _airflow(env, args, stack)
            backfill_id = meta.latest_backfill(dag_id, since=created)
            if backfill_id is None:
                raise UserError(f"`airflow {' '.join(args)}` created no backfill")
            runs = _wait(meta, dag_id, backfill_id, timeout_s, check_alive, say)
        finally:
            if was_paused:
                _airflow(env, ["dags", "pause", dag_id], stack, check=False)
    if not runs:
        raise UserError(
            f"backfill {backfill_id} of {dag_id} ran nothing: every cutoff in {start} .. {end} already has a run "
            f"(reprocess='completed' reruns finished ones)"
        )
    empty = [r.run_id for r in runs if not any(t.ran for t in meta.task_runs(dag_id, r.run_id))]
    if empty:  # Airflow calls a run whose tasks were never scheduled a success
        raise UserError(f"backfill {backfill_id} of {dag_id}: no task ran in {', '.join(empty)}")
    failed = [r for r in runs if r.state != "success"]
    if failed:
        tasks = meta.failed_tasks(dag_id, [r.run_id for r in failed])
        detail = "; ".join(
            f"{r.run_id}: {r.state}, failed tasks {tasks.get(r.run_id) or 'none'}"
            + _reason(stack, dag_id, r.run_id, tasks)
            for r in failed
        )
        where = stack.airflow_home / "logs" / f"dag_id={dag_id}"
        raise UserError(
            f"backfill {backfill_id} of {dag_id}: {len(failed)} of {len(runs)} run(s) failed: {detail} "
            f"(task logs under {where})"
        )
    return BackfillResult(backfill_id, tuple(runs))


def _reason(stack: Stack, dag_id: str, run_id: str, tasks: dict[str, list[str]]) -> str:
    """': Type: message' of the run's first failed task, read from its log; '' when none is found."""
    from ltvfeed.orchestration.dag_test import task_failure_reason

    for label in tasks.get(run_id) or []:
        if label.endswith("(failed)"):
            reason = task_failure_reason(stack.airflow_home, dag_id, run_id, label.rsplit(" (", 1)[0])
            if reason:
                return f": {reason}"
    return ""


def backfill_env(stack: Stack, port: int) -> dict[str, str]:
    """Our Airflow environment for the scheduler/api-server pair of a backfill on ``port``."""
    return {
        **airflow_env(stack),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _airflow(
    env: dict[str, str],
    args: Sequence[str],
    stack: Stack,
    check: bool = True,
    *,
    retries: int = LOCK_RETRIES,
    pause_s: float = LOCK_PAUSE_S,
) -> None:
    """``airflow ARGS``, run again (up to ``retries`` times, ``pause_s`` longer each time) when it failed on the
    SQLite metadata database's lock. The 60 s wait (:mod:`ltvfeed.orchestration.airflow_sqlite`) does not cover
    every case: SQLite answers "database is locked" at once where waiting could deadlock (a transaction that read
    and now writes while another process writes); a clean-clone CI's `backfill create` failed so within a
    minute of starting. Airflow rolls such a command back, and removes a backfill it had begun, so that it can
    be retried (``airflow.models.backfill._cleanup_partial_backfill``)."""
    for attempt in range(retries + 1):
        proc = subprocess.run([airflow_executable(), *args], env=env, capture_output=True, text=True)
        if proc.returncode == 0 or SQLITE_LOCKED not in proc.stdout + proc.stderr or attempt == retries:
            break
        log.warning("`airflow %s` found the metadata database locked; trying again", " ".join(args[:2]))
        time.sleep(pause_s * (attempt + 1))
    if check and proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise UserError(f"`airflow {' '.join(args)}` failed (exit {proc.returncode}):\n" + "\n".join(tail))


@contextmanager
def _components(env: dict[str, str], port: int, logs: Path, say: Callable[[str], None]) -> Iterator[Callable[[], None]]:
    """The execution API and the scheduler, each in its own process group, stopped on exit. Yields a check that
    raises when one of them has exited."""
    logs.mkdir(parents=True, exist_ok=True)
    commands = {
        "api-server": [
            airflow_executable(),
            "api-server",
            "--apps",
            "execution",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        "scheduler": scheduler_command(),
    }
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, argv in commands.items():
            with open(logs / f"{name}.log", "ab") as out:
                procs[name] = subprocess.Popen(
                    argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            if name == "api-server":
                _wait_for_port(port, procs[name], logs / f"{name}.log")
        say(f"api-server (execution API, port {port}) and scheduler running; logs in {logs}")

        def check_alive() -> None:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise UserError(f"the {name} exited (code {proc.returncode}); see {logs / f'{name}.log'}")

        yield check_alive
    finally:
        for proc in procs.values():
            _stop(proc)


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"the api-server exited (code {proc.returncode}) before listening; see {log}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise UserError(f"the api-server did not listen on port {port} within {timeout_s:.0f} s; see {log}")


def _stop(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left after ``grace_s``."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with suppress(ProcessLookupError):  # workers the component forked may outlive it
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait(
    meta: Metadata,
    dag_id: str,
    backfill_id: int,
    timeout_s: float,
    check_alive: Callable[[], None],
    say: Callable[[str], None],
) -> list[BackfillRun]:
    """Poll the backfill's runs until all have finished and the scheduler marked it complete (a backfill left
    incomplete blocks the next one), reporting state changes."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    while True:
        check_alive()
        runs = meta.runs(backfill_id)
        for run in runs:
            if seen.get(run.run_id) != run.state:
                seen[run.run_id] = run.state
                say(f"  {run.run_id}: {run.state}")
        if all(r.finished for r in runs) and meta.backfill_completed(backfill_id):
            return runs
        if time.monotonic() > deadline:
            states = ", ".join(f"{r.run_id} {r.state}" for r in runs) or "no runs created"
            raise UserError(f"backfill {backfill_id} of {dag_id} not finished after {timeout_s:.0f} s: {states}")
        time.sleep(_POLL_S)

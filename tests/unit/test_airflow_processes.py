"""Running Airflow by hand: the failure reason a CLI run prints, and `ltvfeed airflow standalone`'s supervisor
(process groups stopped on SIGTERM within the grace period, even children that ignore SIGTERM; loopback and
parallelism sized to the machine)."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ltvfeed.errors import UserError
from ltvfeed.settings import Settings


def test_failure_reason_is_the_last_exception_in_one_line():
    from ltvfeed.orchestration.dag_test import failure_reason

    lines = [
        "Traceback (most recent call last):\n",
        '  File "x.py", line 3, in f\n',
        "ValueError: an earlier problem\n",
        '    raise UserError(f"no orders before {as_of}: nothing to train on")\n',
        "ltvfeed.errors.UserError: no orders before 2017-03-01: nothing to train on\n",
        "2026-12-04T17:59:40Z [info     ] Marking run <DagRun ltv_retrain> failed [airflow.models.dagrun]\n",
    ]
    assert failure_reason(lines) == "UserError: no orders before 2017-03-01: nothing to train on"
    structured = "[error] Task failed [task] error_detail=[{'exc_type': 'DataQualityError', 'exc_value': 'gate raw "
    structured += "failed: dwell_seconds', 'exc_notes': []}]"
    assert failure_reason([structured]) == "DataQualityError: gate raw failed: dwell_seconds"
    assert failure_reason(["all fine\n"]) is None


def test_failure_reason_of_a_dbt_build_is_dbts_first_failure_and_its_message():
    """The dbt task's own exception only says that dbt failed; dbt's summary names what failed and why."""
    from ltvfeed.orchestration.dag_test import failure_reason

    cosmos = "[cosmos.operators._watcher.base] loc=base.py:227"
    plain = [  # `airflow dags test` output
        f"2026-12-07T03:36:01Z [info     ] 03:36:01  Completed with 2 errors, 0 partial successes: {cosmos}",
        f"2026-12-07T03:36:01Z [error    ] 03:36:01  Failure in test rel_items_order_id (models/a.yml) {cosmos}",
        f"2026-12-07T03:36:01Z [error    ] 03:36:01    Got 1 result, configured to fail if != 0 {cosmos}",
        f"2026-12-07T03:36:01Z [error    ] 03:36:01  Database Error in model stg_orders (models/b.sql) {cosmos}",
        f'2026-12-07T03:36:01Z [error    ] 03:36:01    relation "raw.orders" does not exist {cosmos}',
        "airflow.sdk.exceptions.AirflowException: dbt command failed. The command returned a non-zero exit code 1.",
    ]
    assert failure_reason(plain) == (
        "dbt: Failure in test rel_items_order_id (models/a.yml): Got 1 result, configured to fail if != 0 (and 1 more)"
    )
    assert (
        failure_reason(plain[3:])
        == 'dbt: Database Error in model stg_orders (models/b.sql): relation "raw.orders" does not exist'
    )
    structured = [  # a scheduler-run task's log file
        '{"timestamp":"2026-12-07T02:36:35Z","level":"error","event":"02:36:35  Failure in test not_null_amount '
        '(models/stg_orders.yml)","logger":"cosmos"}',
        '{"timestamp":"2026-12-07T02:36:35Z","level":"error","event":"02:36:35    Got 3 results, configured to fail '
        'if != 0","logger":"cosmos"}',
    ]
    assert failure_reason(structured) == (
        "dbt: Failure in test not_null_amount (models/stg_orders.yml): Got 3 results, configured to fail if != 0"
    )
    assert failure_reason(["KeyError in the task (see above)", "ValueError: x"]) == "ValueError: x"


def test_parse_conf_names_the_problem():
    from ltvfeed.commands.pipeline import parse_conf

    assert parse_conf('{"horizon_days": 30}') == {"horizon_days": 30}
    assert parse_conf(None) is None
    with pytest.raises(UserError, match="must be JSON"):
        parse_conf("{horizon_days: 30}")
    with pytest.raises(UserError, match="JSON object"):
        parse_conf("[30]")


def _airflow_conf(env: dict[str, str], expression: str) -> str:
    """What Airflow's own configuration gives for ``expression`` (of ``conf``) in a fresh process with ``env``."""
    probe = f"from airflow.configuration import conf; print({expression})"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_tasks_wait_a_minute_for_each_execution_api_answer_unless_configured(tmp_path, monkeypatch):
    """A task's calls to the execution API time out after 60 s, not Airflow's 5 s; a user's own value is kept."""
    from ltvfeed.infra.stack import Stack
    from ltvfeed.orchestration.airflow_env import airflow_env

    key = "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"
    monkeypatch.delenv(key, raising=False)
    stack = Stack(Settings(state_dir=tmp_path), "postgresql://nowhere/postgres", "redis://nowhere", False, False)
    assert float(_airflow_conf(airflow_env(stack), "conf.getfloat('workers', 'execution_api_timeout')")) == 60.0
    monkeypatch.setenv(key, "12.5")
    assert airflow_env(stack)[key] == "12.5"


def test_airflow_waits_a_minute_for_a_sqlite_lock_and_keeps_a_configured_database_as_it_is(tmp_path, monkeypatch):
    """Airflow itself (a fresh process with our environment) resolves the connect arguments to sqlite3's 60 s
    lock wait; a user's own database URL or connect arguments are left alone."""
    from ltvfeed.infra.stack import Stack
    from ltvfeed.orchestration.airflow_env import airflow_env

    keys = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS")
    for key in (*keys, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"):
        monkeypatch.delenv(key, raising=False)
    stack = Stack(Settings(state_dir=tmp_path), "postgresql://nowhere/postgres", "redis://nowhere", False, False)
    env = airflow_env(stack)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")
    # the very dict Airflow's engine was built with (its set-up adds check_same_thread for SQLite)
    assert (
        ast.literal_eval(_airflow_conf(env, "conf.getimport('database', 'sql_alchemy_connect_args')"))["timeout"]
        == 60.0
    )
    monkeypatch.setenv(keys[0], "postgresql://airflow@db/airflow")
    assert not any(k.endswith("CONNECT_ARGS") for k in airflow_env(stack))
    monkeypatch.setenv(keys[0], "sqlite:////elsewhere/airflow.db")
    monkeypatch.setenv(keys[1], "my_settings.connect_args")
    assert airflow_env(stack)[keys[1]] == "my_settings.connect_args"


def test_standalone_binds_loopback_and_sizes_parallelism(tmp_path, monkeypatch):
    from ltvfeed.infra.stack import Stack
    from ltvfeed.orchestration.standalone import component_commands, standalone_env

    monkeypatch.delenv("AIRFLOW__CORE__PARALLELISM", raising=False)
    monkeypatch.delenv("AIRFLOW__API__HOST", raising=False)
    settings = Settings(state_dir=tmp_path, airflow_port=18123)
    stack = Stack(settings, "postgresql://nowhere/postgres", "redis://nowhere", False, False)
    env = standalone_env(stack)
    assert env["AIRFLOW__CORE__PARALLELISM"] == str(os.cpu_count())
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    commands = component_commands(env)
    assert commands["api-server"][-4:] == ["--host", "127.0.0.1", "--port", "18123"]
    # no log server (it binds every interface): the UI reads task logs from the local log folder
    assert "--skip-serve-logs" in commands["scheduler"] and "--skip-serve-logs" in commands["triggerer"]
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "3")
    assert standalone_env(stack)["AIRFLOW__CORE__PARALLELISM"] == "3"


# A component that ignores SIGTERM and forks a grandchild that ignores it too: only SIGKILL of the group ends them.
STUBBORN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    open(sys.argv[1] + ".grandchild", "w").write(str(os.getpid()))
    while True: time.sleep(1)
open(sys.argv[1], "w").write(str(os.getpid()))
while True: time.sleep(1)
"""

SUPERVISOR = """
import sys
from pathlib import Path
from ltvfeed.orchestration.standalone import supervise
base = Path(sys.argv[1])
commands = {n: [sys.executable, "-c", sys.argv[2], str(base / n)] for n in ("a", "b")}
sys.exit(supervise(commands, {"PATH": "/usr/bin:/bin"}, base / "logs", base / "run" / "x.pid", grace_s=2))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][0] != "Z"


def _start_supervisor(base: Path) -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(base), STUBBORN])
    files = [base / n for n in ("a", "b", "a.grandchild", "b.grandchild")]
    deadline = time.monotonic() + 30
    while not all(f.exists() and f.read_text() for f in files):
        assert time.monotonic() < deadline and proc.poll() is None, "components did not start"
        time.sleep(0.1)
    return proc, [int(f.read_text()) for f in files]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_supervisor_stops_every_group_on_a_signal(tmp_path, signum):
    proc, pids = _start_supervisor(tmp_path)
    assert json.loads((tmp_path / "run" / "x.pid").read_text())["pid"] == proc.pid
    started = time.monotonic()
    os.kill(proc.pid, signum)
    assert proc.wait(timeout=20) == 0
    took = time.monotonic() - started
    time.sleep(0.3)
    assert [p for p in pids if _alive(p)] == []  # components and their forks, SIGTERM ignored: SIGKILLed
    assert took < 10  # the 2 s grace, then SIGKILL
    assert not (tmp_path / "run" / "x.pid").exists()


def test_stop_supervisor_from_another_process(tmp_path):
    from ltvfeed.orchestration.standalone import running_pid, stop_supervisor

    proc, pids = _start_supervisor(tmp_path)
    pid_path = tmp_path / "run" / "x.pid"
    assert running_pid(pid_path) == proc.pid
    with pytest.raises(UserError, match="already running"):  # a second supervisor on the same pidfile refuses
        _second_supervisor(tmp_path)
    assert stop_supervisor(pid_path) is True
    proc.wait(timeout=20)
    time.sleep(0.3)
    assert [p for p in pids if _alive(p)] == []
    assert stop_supervisor(pid_path) is False  # nothing left to stop


# Exits with code 3 on its first start (a crash), runs on the next; "always" exits with 4 every time.
FLAKY = """
import sys, time
from pathlib import Path
marker = Path(sys.argv[1])
starts = int(marker.read_text() or 0) + 1 if marker.exists() else 1
marker.write_text(str(starts))
if sys.argv[2] == "always" or starts == 1:
    sys.exit(3 if sys.argv[2] == "once" else 4)
while True: time.sleep(1)
"""

RESTARTING = """
import sys
from pathlib import Path
from ltvfeed.orchestration.standalone import supervise
base, mode = Path(sys.argv[1]), sys.argv[3]
commands = {"steady": [sys.executable, "-c", "import time; time.sleep(600)"],
            "flaky": [sys.executable, "-c", sys.argv[2], str(base / "starts"), mode]}
sys.exit(supervise(commands, {"PATH": "/usr/bin:/bin"}, base / "logs", base / "run" / "x.pid", grace_s=2,
                   max_restarts=2, restart_window_s=60))
"""


def test_supervisor_restarts_a_component_that_exits_and_gives_up_on_one_that_keeps_exiting(tmp_path):
    once = tmp_path / "once"
    once.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", RESTARTING, str(once), FLAKY, "once"], stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while not ((once / "starts").exists() and (once / "starts").read_text() == "2"):
        assert time.monotonic() < deadline and proc.poll() is None, "the crashed component was not restarted"
        time.sleep(0.1)
    time.sleep(1)
    assert proc.poll() is None  # still supervising: the restarted component runs, the steady one too
    groups = json.loads((once / "run" / "x.pid").read_text())["groups"]
    assert len(groups) == 2 and all(_alive(g) for g in groups)  # the pidfile names the restarted group
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "flaky exited (code 3); restarting it (1 of 2" in out
    assert [g for g in groups if _alive(g)] == []

    always = tmp_path / "always"
    always.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", RESTARTING, str(always), FLAKY, "always"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 4  # its exit code, after the first start and two restarts
    assert (always / "starts").read_text() == "3"
    assert "flaky exited (code 4) 3 times within 60 s; stopping the others" in proc.stdout


def _second_supervisor(base: Path) -> None:
    from ltvfeed.orchestration.standalone import supervise

    supervise({"c": ["true"]}, {}, base / "logs2", base / "run" / "x.pid")


def test_a_scheduler_run_task_failure_is_read_from_its_log(tmp_path):
    from ltvfeed.orchestration.dag_test import task_failure_reason

    folder = tmp_path / "logs" / "dag_id=ltv_retrain" / "run_id=backfill__2026-02-16" / "task_id=prepare_training_data"
    folder.mkdir(parents=True)
    (folder / "attempt=1.log").write_text('{"event": "Task failed", "error_detail": [{"exc_type": "OSError"}]}\n')
    detail = {"exc_type": "UserError", "exc_value": "horizon_days=365 put the earliest training cutoff at 2016-03-01"}
    line = json.dumps({"event": "Task failed with exception", "error_detail": [{**detail, "frames": []}]})
    (folder / "attempt=2.log").write_text(f'{{"event": "started"}}\n{line}\n')
    reason = task_failure_reason(tmp_path, "ltv_retrain", "backfill__2026-02-16", "prepare_training_data")
    assert reason == "UserError: horizon_days=365 put the earliest training cutoff at 2016-03-01"
    assert task_failure_reason(tmp_path, "ltv_retrain", "backfill__2026-02-16", "batch_score") is None


def test_warm_scheduler_preloads_every_task_library_without_threads_and_runs_airflows_scheduler():
    """The scheduler command imports what tasks use (so forked tasks inherit it), none of it fails or starts a
    thread (forking with threads is unsafe), then hands over to ``airflow scheduler``."""
    from ltvfeed.orchestration.warm_scheduler import preload, scheduler_command

    assert preload(["json", "ltvfeed_no_such_module"]) == ["ltvfeed_no_such_module"]
    proc = subprocess.run(scheduler_command("--help"), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    assert "usage: airflow scheduler" in out.lower()
    assert "not preloaded" not in out and "started threads" not in out, out[-2000:]

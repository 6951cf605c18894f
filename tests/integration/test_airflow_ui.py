"""The Airflow UI as an operator drives it, offline, in headless Chromium: `ltvfeed airflow standalone` on a small
shop whose data ends yesterday; log in (the JWT from POST /auth/token as the `_token` cookie), trigger
`ltv_pipeline` from its Trigger dialog and a 3-day backfill from the same dialog's Backfill tab, and see every run
succeed. Then SIGTERM stops the standalone with every process it started, within seconds.

Needs Debian's `chromium` and `chromedriver` (skipped without them); slow (~10-20 min on 2 cores).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ltvfeed.settings import Settings

IMPLICIT_WAIT_S = 120  # how long a lookup waits for an element: a loaded 2-core machine renders the UI slowly

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def airflow_ui(stack, run_id, tmp_path_factory):
    """A shop ending yesterday in its own warehouse / MLflow db / state dir / Redis project, and
    `ltvfeed airflow standalone` serving it on a free port. Yields (base URL, password, the standalone process)."""
    from ltvfeed.db import drop_database
    from ltvfeed.dbt_runner import parse
    from ltvfeed.features import clear_online
    from ltvfeed.infra.stack import up
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory

    suffix = uuid.uuid4().hex[:6]
    port = _free_port()
    settings = Settings(
        pg_dsn=stack.pg_dsn,
        redis_url=stack.redis_url,
        state_dir=tmp_path_factory.mktemp("ui_state"),
        warehouse_db=f"ltvfeed_test_{run_id}_ui_{suffix}",
        mlflow_db=f"ltvfeed_test_{run_id}_uiml_{suffix}",
        redis_prefix=f"ltvfeed_test_{run_id}_ui_{suffix}:",
        airflow_port=port,
    )
    s = up(settings)
    today = datetime.now(UTC).date()
    simulate_to_directory(
        SimulationConfig(n_users=200, n_items=40, days=45, seed=3, end_date=today), settings.landing_dir, progress=False
    )
    parse(s.env())
    env = {
        **os.environ,
        "LTVFEED_PG_DSN": settings.pg_dsn,
        "LTVFEED_REDIS_URL": settings.redis_url,
        "LTVFEED_STATE_DIR": str(settings.state_dir),
        "LTVFEED_WAREHOUSE_DB": settings.warehouse_db,
        "LTVFEED_MLFLOW_DB": settings.mlflow_db,
        "LTVFEED_REDIS_PREFIX": settings.redis_prefix,
        "LTVFEED_AIRFLOW_PORT": str(port),
    }
    out = settings.state_dir / "standalone.out"
    with open(out, "w") as sink:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ltvfeed"), "airflow", "standalone"],
            env=env,
            cwd=settings.state_dir,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while "Airflow UI:" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(1)
        passwords = s.airflow_home / "simple_auth_manager_passwords.json.generated"
        yield f"http://127.0.0.1:{port}", json.loads(passwords.read_text())["admin"], proc, settings, s.airflow_home
    except BaseException:
        _print_diagnostics(proc, out, s.airflow_home)
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        try:
            clear_online(s)
        finally:
            drop_database(stack.pg_dsn, settings.warehouse_db)
            drop_database(stack.pg_dsn, settings.mlflow_db)


def _print_diagnostics(proc: subprocess.Popen, out: Path, airflow_home: Path, lines: int = 60) -> None:
    """What the standalone and each component last wrote, shown with a failure (pytest prints captured output):
    a component that exits makes the supervisor stop the others, and only these logs say which and why."""
    print(f"standalone exit code: {proc.poll()}")
    for log in [out, *sorted((airflow_home / "logs" / "standalone").glob("*.log"))]:
        with contextlib.suppress(OSError):
            print(
                f"--- {log.name} (last {lines} lines) ---",
                *log.read_text(errors="replace").splitlines()[-lines:],
                sep="\n",
            )


def _json(req: urllib.request.Request, retry_s: float = 180) -> dict:
    """The response's JSON; a refused connection or an answer slower than 30 s is retried for ``retry_s`` (the
    supervisor restarts an api-server that exited, which the diagnostics then show; its one worker answers a
    loaded 2-core machine's requests late); an HTTP error is raised at once."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.load(resp)
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


def _token(base: str, password: str) -> str:
    body = json.dumps({"username": "admin", "password": password}).encode()
    req = urllib.request.Request(f"{base}/auth/token", data=body, headers={"Content-Type": "application/json"})
    return _json(req)["access_token"]


def _runs(base: str, token: str, dag_id: str) -> list[dict]:
    req = urllib.request.Request(
        f"{base}/api/v2/dags/{dag_id}/dagRuns?limit=100", headers={"Authorization": f"Bearer {token}"}
    )
    return _json(req)["dag_runs"]


def _until(found, timeout_s: float, what: str, every_s: float = 1.0):
    """Poll ``found()`` until it returns something truthy (returned) or ``timeout_s`` passes (fails with
    ``what``): a loaded 2-core machine renders and answers slowly, and a fixed sleep races it."""
    deadline = time.monotonic() + timeout_s
    while not (value := found()):
        assert time.monotonic() < deadline, what
        time.sleep(every_s)
    return value


def _submit_backfill(driver, base: str, password: str) -> bool:
    """Click "Run Backfill" once it is enabled (the dialog disables it until its dry run answers); True once the
    backfill exists. A click while the dialog still updates can be lost, so the caller polls this."""
    from selenium.webdriver.common.by import By

    req = urllib.request.Request(
        f"{base}/api/v2/backfills?dag_id=ltv_pipeline", headers={"Authorization": f"Bearer {_token(base, password)}"}
    )
    if _json(req)["total_entries"]:
        return True
    driver.implicitly_wait(0)
    try:
        buttons = driver.find_elements(By.XPATH, "//button[normalize-space(.)='Run Backfill']")
    finally:
        driver.implicitly_wait(IMPLICIT_WAIT_S)
    for button in buttons:
        if button.is_displayed() and button.is_enabled():
            button.click()
            break
    return False


def _wait_all_finished(base: str, password: str, dag_id: str, want: int, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        runs = _runs(base, _token(base, password), dag_id)
        if len(runs) >= want and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        assert time.monotonic() < deadline, [(r["dag_run_id"], r["state"]) for r in runs]
        time.sleep(10)


def _print_failed_tasks(base: str, password: str, dag_id: str, runs: Collection[str], airflow_home: Path) -> None:
    """Each failed task of ``runs`` with the end of its log: a run fails for one task, and only its log says why
    (CI keeps nothing else of the test's Airflow home)."""
    from ltvfeed.orchestration.dag_test import task_attempt_logs

    for run_id in runs:
        req = urllib.request.Request(
            f"{base}/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances?limit=100",
            headers={"Authorization": f"Bearer {_token(base, password)}"},
        )
        for ti in _json(req)["task_instances"]:
            if ti["state"] in ("success", "skipped"):
                continue
            print(f"--- {run_id} {ti['task_id']}: {ti['state']} (try {ti['try_number']}) ---")
            for log in task_attempt_logs(airflow_home, dag_id, run_id, ti["task_id"]):
                print(f"{log.name}:", *log.read_text(errors="replace").splitlines()[-40:], sep="\n")


def _drive_the_ui(base: str, password: str, tmp_path: Path, headless_browser, airflow_home: Path) -> None:
    """Wait for the DAG to be parsed, then trigger a run and a 3-day backfill from the UI; every run succeeds."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    deadline = time.monotonic() + 600
    while True:  # the DAG processor has parsed the DAG files
        try:
            _json(
                urllib.request.Request(
                    f"{base}/api/v2/dags/ltv_pipeline", headers={"Authorization": f"Bearer {_token(base, password)}"}
                )
            )
            break
        except urllib.error.HTTPError as exc:
            assert exc.code == 404 and time.monotonic() < deadline, exc
            time.sleep(5)
    driver = headless_browser()
    driver.set_window_size(1400, 1000)
    driver.implicitly_wait(IMPLICIT_WAIT_S)
    try:
        driver.get(f"{base}/auth/login")  # a page of the origin, so that its cookie can be set
        driver.add_cookie({"name": "_token", "value": _token(base, password), "path": "/"})
        driver.get(f"{base}/dags/ltv_pipeline")
        trigger = driver.find_element(By.CSS_SELECTOR, "[data-testid=trigger-dag-button]")  # waits for the page
        assert "ltv_pipeline" in driver.title  # the UI rendered offline (assets served by the api-server)

        # a single run: the Trigger dialog (it unpauses the DAG on trigger, as the dialog offers by default)
        trigger.click()
        driver.find_element(By.CSS_SELECTOR, "[data-testid=trigger-dag-submit]").click()
        _until(
            lambda: any(r["run_type"] == "manual" for r in _runs(base, _token(base, password), "ltv_pipeline")),
            180,
            "the Trigger dialog created no run",
            every_s=2,
        )

        # a 3-day backfill: the same dialog's Backfill tab, dates typed into its pickers
        driver.get(f"{base}/dags/ltv_pipeline")
        driver.find_element(By.CSS_SELECTOR, "[data-testid=trigger-dag-button]").click()
        driver.find_element(By.XPATH, "//*[normalize-space(text())='Backfill']").click()
        today = datetime.now(UTC).date()
        first, last = today - timedelta(days=3), today - timedelta(days=1)
        pickers = driver.find_elements(By.CSS_SELECTOR, "[data-testid=datetime-input]")
        assert len(pickers) == 2  # From, To
        for picker, day in zip(pickers, (first, last), strict=True):
            picker.click()
            popover = _until(
                lambda: [
                    p
                    for p in driver.find_elements(By.CSS_SELECTOR, "[data-scope=popover][data-part=content]")
                    if p.is_displayed()
                ],
                120,
                "the date picker did not open",
            )[-1]
            day_input, time_input = popover.find_elements(By.TAG_NAME, "input")[:2]
            day_input.send_keys(day.strftime("%Y/%m/%d"), Keys.ENTER)
            time_input.send_keys("00:00", Keys.ENTER)
            driver.find_element(By.XPATH, "//*[normalize-space(text())='Date Range']").click()  # close the picker
        _until(lambda: _submit_backfill(driver, base, password), 180, "the Backfill tab created no backfill", 3)

        # while runs are active the DAG page re-polls the API every few seconds: leave it for the wait (the
        # browser and the api-server otherwise spend minutes of CPU that the runs on a 2-core machine need)
        driver.get("about:blank")
        runs = _wait_all_finished(base, password, "ltv_pipeline", want=4, timeout_s=3000)
        backfilled = sorted(r["logical_date"][:10] for r in runs if r["run_type"] == "backfill")
        assert backfilled == [(first + timedelta(days=k)).isoformat() for k in range(3)]
        assert any(r["run_type"] == "manual" for r in runs)
        failed = {r["dag_run_id"]: r["state"] for r in runs if r["state"] != "success"}
        if failed:
            _print_failed_tasks(base, password, "ltv_pipeline", failed, airflow_home)
        assert failed == {}

        # the UI shows them too: the DAG's runs list
        driver.get(f"{base}/dags/ltv_pipeline/runs")
        _until(
            lambda: driver.page_source.count("backfill__") >= 3 and "success" in driver.page_source,
            120,
            "the runs page does not list the 3 backfill runs as successful",
        )
    except Exception:
        driver.save_screenshot(str(tmp_path / "failure.png"))  # what the browser showed
        raise


def test_trigger_and_backfill_from_the_ui_then_sigterm_stops_everything(airflow_ui, tmp_path, headless_browser):
    base, password, proc, settings, airflow_home = airflow_ui
    try:
        _drive_the_ui(base, password, tmp_path, headless_browser, airflow_home)
    except BaseException:
        _print_diagnostics(proc, settings.state_dir / "standalone.out", airflow_home)
        raise

    # SIGTERM: the supervisor stops every component's process group (and their workers) within seconds
    groups = json.loads((settings.state_dir / "run" / "airflow.pid").read_text())["groups"]
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert time.monotonic() - started < 30
    left = subprocess.run(["ps", "-eo", "pgid=,pid=,stat="], capture_output=True, text=True).stdout.split("\n")
    alive = [line for line in left if line.split() and int(line.split()[0]) in groups and "Z" not in line.split()[2]]
    assert alive == []
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", int(base.rsplit(":", 1)[1]))) != 0  # the UI's port is free again

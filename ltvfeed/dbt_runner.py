"""Run the dbt project (repo ``dbt/``) against the stack's warehouse.

dbt runs as a subprocess of this virtualenv's dbt: its connection comes only from the environment we hand it
(``Stack.env()``: LTVFEED_DBT_*), so an Airflow worker, a test or the CLI never leak settings into each other,
and dbt's process-global state (flags, adapter cache) starts clean on every call. A failure raises
:class:`UserError` naming the failing nodes and dbt's messages, read from ``run_results.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltvfeed.errors import UserError
from ltvfeed.settings import project_root

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack

_FAILED_STATUSES = {"error", "fail", "runtime error"}
_MAX_REPORTED_FAILURES = 10


def dbt_project_dir() -> Path:
    """The dbt project (also holds profiles.yml). Nothing is written here: see :func:`dbt_work_dir`."""
    return project_root() / "dbt"


def dbt_work_dir(stack_env: Mapping[str, str] | None = None) -> Path:
    """``<state_dir>/dbt``: where dbt's target/ (manifest, partial parse) and logs/ go, so that an installed
    package (or a read-only checkout) works and tests leave the checkout untouched."""
    state = (stack_env or {}).get("LTVFEED_STATE_DIR") or os.environ.get("LTVFEED_STATE_DIR")
    if state:
        return Path(state) / "dbt"
    from ltvfeed.settings import get_settings

    return get_settings().state_dir / "dbt"


def manifest_path(stack_env: Mapping[str, str] | None = None) -> Path:
    """The manifest ``ltvfeed dbt parse`` writes and Cosmos reads."""
    return dbt_work_dir(stack_env) / "target" / "manifest.json"


def dbt_command() -> list[str]:
    """This virtualenv's dbt (next to the running interpreter), so the pinned dbt-core is always used."""
    beside = Path(sys.executable).with_name("dbt")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("dbt")
    if found:
        return [found]
    raise UserError("dbt is not installed in this environment; install the project (pip install -e .)")


def dbt_vars(
    as_of: date | None = None, horizon_days: int | None = None, decay_half_life_days: int | None = None
) -> dict[str, Any]:
    """The ``--vars`` mapping for a run (also what an Airflow/Cosmos task should pass); unset = project default."""
    chosen: dict[str, Any] = {}
    if as_of is not None:
        if not isinstance(as_of, date):
            raise UserError(f"as_of must be a date, got {as_of!r}")
        chosen["as_of"] = as_of.isoformat()
    for name, value in (("horizon_days", horizon_days), ("decay_half_life_days", decay_half_life_days)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise UserError(f"{name} must be a positive whole number of days, got {value!r}")
        chosen[name] = value
    return chosen


def dbt_env(stack_env: Mapping[str, str], target_path: Path | None = None) -> dict[str, str]:
    """os.environ + the stack's variables + where dbt finds the project and writes its artifacts (target and
    logs under the state dir, never in the project)."""
    project = dbt_project_dir()
    target = target_path or dbt_work_dir(stack_env) / "target"
    return {
        **os.environ,
        **stack_env,
        "DBT_PROJECT_DIR": str(project),
        "DBT_PROFILES_DIR": str(project),
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(dbt_work_dir(stack_env) / "logs"),
        "DBT_PACKAGES_INSTALL_PATH": str(dbt_work_dir(stack_env) / "dbt_packages"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
        "DBT_USE_COLORS": "false",
        "NO_COLOR": "1",
    }


@contextmanager
def run_target(stack_env: Mapping[str, str]) -> Iterator[Path]:
    """A target folder of this invocation alone (overlapping runs for different cutoffs must not share one),
    seeded with the shared partial-parse cache; removed afterwards."""
    shared = dbt_work_dir(stack_env) / "target"
    target = dbt_work_dir(stack_env) / "runs" / uuid.uuid4().hex[:12] / "target"
    target.mkdir(parents=True)
    cache = shared / "partial_parse.msgpack"
    if cache.is_file():
        shutil.copy2(cache, target / cache.name)
    try:
        yield target
    finally:
        shutil.rmtree(target.parent, ignore_errors=True)


def run_dbt(
    stack_env: Mapping[str, str],
    args: list[str],
    *,
    target_path: Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Run ``dbt <args>`` in the project; raise UserError naming every failing node when dbt fails.

    ``target_path`` is where dbt writes its artifacts; by default a folder of this invocation alone under the
    state dir (concurrent runs each need their own). ``echo`` receives dbt's output lines as they come (the CLI
    prints them; tests and tasks may leave it out).
    """
    if target_path is None:
        with run_target(stack_env) as target:
            return run_dbt(stack_env, args, target_path=target, echo=echo)
    env = dbt_env(stack_env, target_path)
    results_file = Path(env["DBT_TARGET_PATH"]) / "run_results.json"
    results_file.unlink(missing_ok=True)  # a stale file would report an earlier run's failures
    tail: deque[str] = deque(maxlen=25)
    cmd = [*dbt_command(), *args]
    with subprocess.Popen(
        cmd,
        cwd=dbt_project_dir(),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            if echo is not None:
                echo(line)
        code = proc.wait()
    if code != 0:
        raise UserError(_failure_message(args, results_file, list(tail)))


def _failure_message(args: list[str], results_file: Path, tail: list[str]) -> str:
    what = f"dbt {args[0]}" if args else "dbt"
    failures = _failed_nodes(results_file)
    if failures:
        shown = "; ".join(failures[:_MAX_REPORTED_FAILURES])
        more = len(failures) - _MAX_REPORTED_FAILURES
        return f"{what} failed: {shown}" + (f" (and {more} more)" if more > 0 else "")
    # dbt stopped before running nodes (bad vars, compile error, unreachable database): its own words.
    lines = [_strip_timestamp(ln) for ln in tail if ln.strip()]
    first = next((i for i, ln in enumerate(lines) if "error" in ln.lower()), max(len(lines) - 5, 0))
    return f"{what} failed: " + " | ".join(lines[first : first + 8])


def _strip_timestamp(line: str) -> str:
    """'09:01:58  Compilation Error ...' -> 'Compilation Error ...' (dbt prefixes its log lines)."""
    head, sep, rest = line.partition("  ")
    return (rest if sep and head.replace(":", "").isdigit() else line).strip()


def _failed_nodes(results_file: Path) -> list[str]:
    """'<type> <name>: <message>' for every errored/failed node of the run."""
    if not results_file.is_file():
        return []
    try:
        results = json.loads(results_file.read_text()).get("results", [])
    except (OSError, ValueError):
        return []
    failed = []
    for result in results:
        if result.get("status") not in _FAILED_STATUSES:
            continue
        unique_id = str(result.get("unique_id", "?"))
        kind, _, rest = unique_id.partition(".")
        name = rest.split(".", 1)[-1] if "." in rest else rest
        message = " ".join(str(result.get("message") or result.get("status")).split())
        failed.append(f"{kind} {name}: {message}")
    return failed


def build(
    stack: Stack,
    as_of: date | None,
    horizon_days: int | None,
    select: str | None = None,
    *,
    decay_half_life_days: int | None = None,
    full_refresh: bool = False,
    target_path: Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> None:
    """``dbt build`` (models + their tests) for one cutoff. as_of None = the day after the latest raw
    event/order; horizon_days None = the project default (365). Re-running an as_of replaces its snapshot.
    Holds the warehouse lease while it builds (:mod:`ltvfeed.warehouse.lease`): a pipeline run building
    another cutoff is waited for."""
    from ltvfeed.warehouse.lease import held

    args = ["build", "--vars", json.dumps(dbt_vars(as_of, horizon_days, decay_half_life_days))]
    if select:
        args += ["--select", select]
    if full_refresh:
        args.append("--full-refresh")
    with held(stack.warehouse_dsn):
        run_dbt(stack.env(), args, target_path=target_path, echo=echo)


def parse(stack_env: Mapping[str, str] | None = None, *, target_path: Path | None = None) -> Path:
    """``dbt parse``: validates the project and writes target/manifest.json (Cosmos can load it; by default
    :func:`manifest_path` under the state dir); no database connection is made. Returns the manifest's path."""
    env = stack_env or {}
    target = target_path or manifest_path(env).parent
    target.mkdir(parents=True, exist_ok=True)
    run_dbt(env, ["parse"], target_path=target)
    return target / "manifest.json"

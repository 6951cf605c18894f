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
from collections import deque
from collections.abc import Callable
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
    """The dbt project (also holds profiles.yml; target/ and logs/ are written here, gitignored)."""
    return project_root() / "dbt"


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


def dbt_env(stack_env: dict[str, str], target_path: Path | None = None) -> dict[str, str]:
    """os.environ + the stack's variables + where dbt finds the project and writes its artifacts."""
    project = dbt_project_dir()
    return {
        **os.environ,
        **stack_env,
        "DBT_PROJECT_DIR": str(project),
        "DBT_PROFILES_DIR": str(project),
        "DBT_TARGET_PATH": str(target_path or project / "target"),
        "DBT_LOG_PATH": str(project / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
        "DBT_USE_COLORS": "false",
        "NO_COLOR": "1",
    }


def run_dbt(
    stack_env: dict[str, str],
    args: list[str],
    *,
    target_path: Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Run ``dbt <args>`` in the project; raise UserError naming every failing node when dbt fails.

    ``target_path`` separates concurrent runs (each needs its own target/); ``echo`` receives dbt's output
    lines as they come (the CLI prints them; tests and tasks may leave it out).
    """
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
    event/order; horizon_days None = the project default (365). Re-running an as_of replaces its snapshot."""
    args = ["build", "--vars", json.dumps(dbt_vars(as_of, horizon_days, decay_half_life_days))]
    if select:
        args += ["--select", select]
    if full_refresh:
        args.append("--full-refresh")
    run_dbt(stack.env(), args, target_path=target_path, echo=echo)


def parse(stack_env: dict[str, str] | None = None, *, target_path: Path | None = None) -> Path:
    """``dbt parse``: validates the project and writes target/manifest.json (Cosmos can load it); no database
    connection is made. Returns the manifest's path."""
    env = stack_env or {}
    run_dbt(env, ["parse"], target_path=target_path)
    return Path(dbt_env(env, target_path)["DBT_TARGET_PATH"]) / "manifest.json"

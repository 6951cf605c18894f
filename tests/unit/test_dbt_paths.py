"""dbt writes nothing into the project folder (issue 11.11, issue 13): target/, logs/ and packages live under the
state dir, so an installed package or a read-only checkout works, and overlapping runs get their own target."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ltvfeed.dbt_runner import dbt_project_dir, manifest_path, parse, run_dbt


def _snapshot(folder: Path) -> set[str]:
    """Every file and folder under ``folder`` (in a fresh checkout dbt used to add target/ and logs/)."""
    return {str(Path(root, name).relative_to(folder)) for root, dirs, files in os.walk(folder) for name in dirs + files}


def _git_status(folder: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--", str(folder)],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_dbt_commands_write_only_under_the_state_dir(tmp_path: Path) -> None:
    project = dbt_project_dir()
    before, status_before = _snapshot(project), _git_status(project)
    env = {"LTVFEED_STATE_DIR": str(tmp_path)}

    manifest = parse(env)
    assert manifest == manifest_path(env) == tmp_path / "dbt" / "target" / "manifest.json"
    assert manifest.is_file()
    run_dbt(env, ["ls", "--resource-type", "model"])  # default target: this invocation's own, then removed

    assert _snapshot(project) == before
    assert _git_status(project) == status_before
    assert any((tmp_path / "dbt" / "logs").iterdir())
    assert not any((tmp_path / "dbt" / "runs").iterdir())

"""``ltvfeed experiments simulate``'s one-line errors for bad arguments; the closed loop itself runs on the real
servers in tests/integration/test_closed_loop.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--days", "0"], "--days"),
        (["--users", "5"], "--users"),
        (["--regenerate-every", "-1"], "--regenerate-every"),
        (["--arms", "a:weird=1,b:classic=1"], "feed must be one of"),
        (["--arms", "a:variant:mine=1,b:classic=1"], "only variants named after a weight preset"),
    ],
)
def test_bad_arguments_are_one_line_errors(args: list[str], named: str, tmp_path) -> None:
    env = {**os.environ, "LTVFEED_STATE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "ltvfeed.cli", "experiments", "simulate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert named in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # refused before touching the stack

"""Running the ``feast`` CLI (``feast serve`` above all) against the stack's configuration."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ltvfeed.errors import UserError
from ltvfeed.features.config import ensure_feast_schema, feast_env, feature_repo_dir

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack

DEFAULT_FEAST_PORT = 6566  # Feast's own default


def feast_executable() -> str:
    """This virtualenv's feast (next to the running interpreter), so the pinned Feast is always used."""
    beside = Path(sys.executable).with_name("feast")
    if beside.is_file():
        return str(beside)
    found = shutil.which("feast")
    if found:
        return found
    raise UserError("feast is not installed in this environment; install the project (pip install -e .)")


def feast_cli(stack: Stack, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """(command, environment) running ``feast <args>`` on the feature repo with this stack's configuration."""
    import os

    ensure_feast_schema(stack)
    env = {**os.environ, **feast_env(stack)}
    return [feast_executable(), "--chdir", str(feature_repo_dir()), *args], env


def serve_command(stack: Stack, host: str = "127.0.0.1", port: int = DEFAULT_FEAST_PORT) -> tuple[list[str], dict]:
    """``feast serve`` (HTTP: POST /get-online-features) on host:port; loopback unless told otherwise. Gunicorn's
    control socket goes under the state dir (per port), not into the home folder shared by every run."""
    if not 0 < port < 65536:
        raise UserError(f"port must be 1..65535, got {port}")
    cmd, env = feast_cli(stack, ["serve", "--host", host, "--port", str(port), "--no-access-log"])
    runtime = stack.settings.state_dir / "run" / f"feast-{port}"
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    return cmd, {**env, "XDG_RUNTIME_DIR": str(runtime)}


def serve(stack: Stack, host: str = "127.0.0.1", port: int = DEFAULT_FEAST_PORT) -> int:
    """Run ``feast serve`` in the foreground as its own process group, recorded as ``run/feast-<port>.pid``:
    SIGTERM/SIGINT (or ``ltvfeed stack down``) stops gunicorn's master and workers together, freeing the port."""
    from ltvfeed.infra.processes import run_group_in_foreground

    cmd, env = serve_command(stack, host, port)
    return run_group_in_foreground(cmd, state_dir=stack.settings.state_dir, name=f"feast-{port}", env=env)

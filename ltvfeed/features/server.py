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
    """``feast serve`` (HTTP: POST /get-online-features) on host:port; loopback unless told otherwise."""
    if not 0 < port < 65536:
        raise UserError(f"port must be 1..65535, got {port}")
    return feast_cli(stack, ["serve", "--host", host, "--port", str(port), "--no-access-log"])

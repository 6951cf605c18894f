"""The MLflow tracking server's commands without a server: status and stop when none runs, a busy port is an
actionable error. Starting one is in tests/integration/test_mlflow_server.py."""

from __future__ import annotations

import socket

import pytest

from ltvfeed.errors import UserError
from ltvfeed.infra.mlflow_server import mlflow_server_status, start_mlflow_server, stop_mlflow_server
from ltvfeed.infra.stack import Stack
from ltvfeed.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_status_and_stop_without_a_server(tmp_path):
    settings = Settings(state_dir=tmp_path, mlflow_port=_free_port())
    status = mlflow_server_status(settings)
    assert not status.running and status.pid is None and status.url.endswith(f":{settings.mlflow_port}")
    assert stop_mlflow_server(settings) is False


def test_busy_port_is_an_actionable_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = Settings(state_dir=tmp_path, mlflow_port=port)
        stack = Stack(settings, "postgresql://postgres@127.0.0.1:1/postgres", "redis://127.0.0.1:1/0", False, False)
        with pytest.raises(UserError, match="LTVFEED_MLFLOW_PORT"):
            start_mlflow_server(stack)
    assert not (tmp_path / "mlflow-server" / "server.json").exists()

"""The MLflow tracking server: started on demand over the stack's backend database, answering, and stopped. The
commands without a server are in tests/unit/test_mlflow_server.py."""

from __future__ import annotations

import dataclasses
import json
import socket
import urllib.request
import uuid
from pathlib import Path

import pytest

from ltvfeed.infra.mlflow_server import mlflow_server_status, start_mlflow_server, stop_mlflow_server
from tests.unit.test_mlflow_server import _free_port


@pytest.mark.integration
def test_server_starts_answers_and_stops(stack, tmp_path):
    from ltvfeed.db import drop_database, ensure_database
    from ltvfeed.infra.tracking import use_experiment

    name = f"{stack.settings.mlflow_db}_{uuid.uuid4().hex[:6]}"
    ensure_database(stack.pg_dsn, name)
    settings = stack.settings.model_copy(
        update={"mlflow_db": name, "state_dir": tmp_path / "state", "mlflow_port": _free_port()}
    )
    s = dataclasses.replace(stack, settings=settings)
    try:
        url = start_mlflow_server(s)  # on a fresh database: the server creates MLflow's tables
        experiment_id = use_experiment(s, "server-test")  # written in-process, straight to the database
        pid = mlflow_server_status(settings).pid
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
            assert resp.status == 200
        # the server reads the same backend: it sees the experiment created in-process
        query = f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=server-test"
        with urllib.request.urlopen(query, timeout=10) as resp:
            assert json.load(resp)["experiment"]["experiment_id"] == experiment_id
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"MLFLOW_DISABLE_TELEMETRY=true" in environ  # no usage data sent from the server either
        assert start_mlflow_server(s) == url  # idempotent: the same server
        assert mlflow_server_status(settings).pid == pid
        assert stop_mlflow_server(settings) is True
        assert not mlflow_server_status(settings).running
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", settings.mlflow_port)) != 0
    finally:
        stop_mlflow_server(settings)
        drop_database(stack.pg_dsn, name)

"""The warehouse backtest: the log of tests/unit/test_ltv_backtest.py imported into a fresh warehouse backtests
to the same folds as the file, through ``ltv backtest --warehouse``, which also logs the backtest as one MLflow
run of experiment ``ltv_backtest``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ltvfeed.training.ltv_backtest import backtest
from tests.unit import test_ltv_backtest as unit_half
from tests.unit.test_ltv_backtest import CUTOFFS, QUICK, H

log, folds = unit_half.log, unit_half.folds  # the unit half's fixtures, requested by name

# ------------------------------------------------------------------------------------- integration: warehouse


def _cli(stack, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ltvfeed.cli", "ltv", "backtest", *args]
    return subprocess.run(command, env={**os.environ, **stack.env()}, capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_warehouse_backtest_matches_the_file_and_is_logged_to_mlflow(empty_shop, log, folds, tmp_path) -> None:
    from ltvfeed.infra.tracking import configure_mlflow
    from ltvfeed.ingest import import_file
    from ltvfeed.training.ltv_backtest import warehouse_orders

    cutoff = CUTOFFS[1]
    args = ["--warehouse", "--cutoffs", cutoff.isoformat(), "--horizon-days", str(H)]
    empty = _cli(empty_shop, *args, "--out", str(tmp_path / "none"))
    assert empty.returncode == 2 and empty.stderr.strip().count("\n") == 0, empty.stderr[-2000:]
    assert "the warehouse has no orders" in empty.stderr

    log.to_csv(tmp_path / "log.csv", index=False)
    report = import_file(empty_shop.warehouse_dsn, "orders", tmp_path / "log.csv", transaction_log=True)
    assert report.rows_loaded == len(log) and report.rows_quarantined == 0
    # same orders, same folds: the warehouse's holdout is the file's, customer for customer
    (fold,) = backtest(warehouse_orders(empty_shop.warehouse_dsn), [cutoff], H, QUICK)
    from_file = folds[CUTOFFS.index(cutoff)]
    assert (fold.n_train, fold.n_holdout) == (from_file.n_train, from_file.n_holdout)
    np.testing.assert_allclose(fold.y, from_file.y, rtol=1e-12)

    done = _cli(empty_shop, *args, "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bgnbd_gamma_gamma" in done.stdout and "normalized_gini" in done.stdout
    assert (tmp_path / "out" / "backtest.html").is_file() and (tmp_path / "out" / "backtest.csv").is_file()
    client = configure_mlflow(empty_shop)
    experiment = client.get_experiment_by_name("ltv_backtest")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert f"MLflow run {run.info.run_id}" in done.stdout
    params = run.data.params
    assert params["source"] == "warehouse" and params["cutoffs"] == cutoff.isoformat()
    assert params["horizon_days"] == str(H) and params["n_customers"] == str(log["customer_id"].nunique())
    saved = pd.read_csv(tmp_path / "out" / "backtest.csv")
    for _, row in saved.iterrows():
        for metric in ("spearman", "normalized_gini", "vwde"):
            logged = run.data.metrics[f"{cutoff.isoformat()}.{row['model']}.{metric}"]
            assert logged == pytest.approx(row[metric])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"backtest.html", "backtest.csv", f"cutoff_{cutoff.isoformat()}_gain.png"} <= artifacts
    html_copy = Path(client.download_artifacts(run.info.run_id, "backtest.html", str(tmp_path)))
    assert html_copy.read_text() == (tmp_path / "out" / "backtest.html").read_text()

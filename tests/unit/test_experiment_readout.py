"""The report step without servers: metrics recorded in MLflow, a metric that never moves (no clicks at all)
still gets a report, bad CSVs are one-line errors."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from ltvfeed.errors import UserError
from ltvfeed.experiments import registry
from ltvfeed.experiments.readout import read_metrics_csv, report_metrics, write_report


def _record() -> registry.ExperimentRecord:
    arms = [registry.FeedArm(name="control", weight=1), registry.FeedArm(name="treatment", weight=1)]
    return registry.ExperimentRecord(
        experiment=registry.Experiment(name="e", salt="s", arms=arms),
        status="running",
        created_at=datetime(2024, 3, 1, tzinfo=UTC),
        started_at=None,
        stopped_at=None,
    )


def _users(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    converted = (rng.random(n) < np.where(np.arange(n) % 2, 0.5, 0.2)).astype(int)
    return pd.DataFrame(
        {
            "arm": np.where(np.arange(n) % 2, "treatment", "control"),
            "user_id": [f"u{i}" for i in range(n)],
            "exposures": rng.integers(1, 4, n),
            "clicks": 0,  # nobody clicked: CTR is constant
            "converted": converted,
            "orders": converted,
            "revenue": converted * 20.0,
            "pre_revenue": rng.integers(1, 50, n).astype(float),
            "long_window_revenue": converted * 20.0,
            "predicted_ltv_first": np.nan,
            "predicted_ltv_last": np.nan,
            "first_exposed_on": pd.to_datetime("2024-03-01") + pd.to_timedelta(np.arange(n) % 3, unit="D"),
        }
    )


def test_constant_metric_and_recorded_metrics(tmp_path) -> None:
    users = _users()
    readout = write_report(_record(), users, tmp_path / "r" / "e.html")
    assert readout.path.read_text().count("data:image/png") == 2
    metrics = report_metrics(readout.analysis)
    rates = users.groupby("arm")["converted"].mean()
    assert metrics["treatment_lift"] == pytest.approx(rates["treatment"] / rates["control"] - 1)
    assert metrics["treatment_lift_low"] < metrics["treatment_lift"] < metrics["treatment_lift_high"]
    assert metrics["users_control"] == metrics["users_treatment"] == 200
    assert all(math.isfinite(v) for v in metrics.values())
    ctr = next(r for r in readout.analysis.results if r.metric == "ctr")
    assert ctr.effect.standard_error == 0 and ctr.effect.p_value == 1.0


def test_bad_metrics_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="--metrics"):
        read_metrics_csv(tmp_path / "missing.csv")
    with pytest.raises(UserError, match=r"lack columns: .*clicks"):
        write_report(_record(), _users().drop(columns="clicks"), tmp_path / "e.html")

"""Customers scored on the history length the network trained on (training/history_window.py): the frame rules,
the window travelling in the saved model, and the effect that motivates it on a short grocer log."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from ltvfeed.simulator.transaction_logs import START, grocer_log
from ltvfeed.training.fit import LtvModel, TrainConfig
from ltvfeed.training.history_window import HistoryWindow
from ltvfeed.training.ltv_backtest import backtest_fold, orders_from_log
from ltvfeed.training.ltv_predict import PredictPlan

QUICK = TrainConfig(max_epochs=8, patience=3, batch_size=256, num_threads=1, seed=0)


def customers(tenure: list[float], orders_per_day: float = 0.15, spend_per_order: float = 40.0) -> pd.DataFrame:
    """Steady buyers observed for ``tenure`` days: every count is rate x the days it covers."""
    t = np.asarray(tenure, dtype=np.float64)
    frame = pd.DataFrame({"user_id": [f"u{i}" for i in range(len(t))], "tenure_days": t, "recency_days": t / 2})
    frame["frequency"] = orders_per_day * t
    frame["monetary_total"] = spend_per_order * frame["frequency"]
    frame["monetary_avg"] = spend_per_order
    for w in (30, 90, 365):
        frame[f"orders_{w}d"] = orders_per_day * np.minimum(t, w)
        frame[f"revenue_{w}d"] = spend_per_order * frame[f"orders_{w}d"]
    frame["click_per_view_90d"] = 0.3
    frame["country"] = "de"
    return frame


def test_the_window_is_the_longest_training_history() -> None:
    assert HistoryWindow.fit(customers([3, 27, 12])) == HistoryWindow(27.0)
    assert HistoryWindow.fit(customers([3]).drop(columns="tenure_days")) is None
    assert HistoryWindow.fit(customers([0, 0])) is None


def test_rows_within_the_window_are_left_alone() -> None:
    frame = customers([5, 20, 27])
    assert HistoryWindow(27.0).align(frame) is frame


def test_a_long_history_is_put_on_the_training_scale_at_the_customers_own_rate() -> None:
    window = HistoryWindow(27.0)
    trained = customers([27])
    scored = window.align(customers([117, 10]))
    long, short = scored.iloc[0], scored.iloc[1]
    for column in ("frequency", "monetary_total", "orders_90d", "revenue_90d", "orders_365d", "revenue_365d"):
        assert long[column] == pytest.approx(trained[column].iloc[0])  # 117 days at the same rate -> 27 days' worth
    assert long["tenure_days"] == 27.0 and long["recency_days"] == 27.0  # day counts capped at the window
    assert long["monetary_avg"] == 40.0 and long["click_per_view_90d"] == 0.3  # ratios keep their meaning
    assert long["country"] == "de"
    pd.testing.assert_series_equal(short, customers([117, 10]).iloc[1], check_names=False)  # within the window


def test_a_window_shorter_than_a_feature_window_rescales_only_what_is_longer() -> None:
    scored = HistoryWindow(60.0).align(customers([200]))
    reference = customers([60])
    assert scored["orders_30d"].iloc[0] == pytest.approx(reference["orders_30d"].iloc[0])  # 30 <= 60: as it was
    assert scored["orders_90d"].iloc[0] == pytest.approx(reference["orders_90d"].iloc[0])
    assert scored["frequency"].iloc[0] == pytest.approx(reference["frequency"].iloc[0])


def test_the_window_travels_in_the_saved_model(tmp_path) -> None:
    rng = np.random.default_rng(0)
    train = customers(list(rng.uniform(1, 27, 400)), orders_per_day=0.2)
    y = rng.gamma(1.0, 30.0, len(train)) * (rng.random(len(train)) < 0.7)
    model = LtvModel(90, replace(QUICK, members=2), categorical_columns=["country"]).fit(train, y)
    assert model.module.window == HistoryWindow(float(train["tenure_days"].max()))
    scored = customers([117, 200, 15])
    loaded = LtvModel.load(model.save(tmp_path / "model"))
    assert loaded.module.window == model.module.window
    pd.testing.assert_frame_equal(loaded.predict(scored), model.predict(scored))
    unaligned = LtvModel(90, replace(QUICK, members=2, align_history=False), categorical_columns=["country"])
    assert unaligned.fit(train, y).module.window is None


def test_a_short_grocer_log_keeps_its_total_when_histories_are_aligned() -> None:
    """Four months of a grocer's log, 90 days ahead, with the full 90-day label window (``ltv predict`` would split
    this log in half instead): trained on 27-day histories, scored on 117-day ones. Without alignment the network
    extrapolates the longer histories into a total far off; with it the total holds."""
    orders = orders_from_log(grocer_log(n=600))
    cutoff = START + timedelta(days=117)
    full_window = PredictPlan(cutoff, 90, label_days=90)
    errors = {
        align: backtest_fold(orders, cutoff, 90, replace(QUICK, align_history=align), full_window).metrics.loc["ziln"]
        for align in (True, False)
    }
    assert abs(errors[True]["total_error"]) <= 0.10
    assert abs(errors[True]["total_error"]) < abs(errors[False]["total_error"])
    assert errors[True]["spearman"] > 0.9

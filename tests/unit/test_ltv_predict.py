"""``ltvfeed ltv predict`` without a warehouse: where the history is cut (and scaled when it is shorter than twice
the horizon). Predicting from an imported transaction log is in tests/integration/test_ltv_predict.py."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from ltvfeed.errors import UserError
from ltvfeed.training.ltv_predict import extrapolate_prob, plan_predict


def test_plan_uses_the_full_horizon_when_history_allows():
    plan = plan_predict(date(2024, 10, 1), 90, first_day=date(2023, 1, 1))
    assert (plan.train_cutoff, plan.label_days, plan.scale, plan.scaled) == (date(2024, 7, 3), 90, 1.0, False)
    # members learn a quarter of the window earlier; the later cutoff calibrates them out of time
    assert plan.train_cutoffs == (date(2024, 7, 3) - timedelta(days=22), date(2024, 7, 3))
    assert "calibrated out of time at 2024-07-03" in plan.describe()


def test_plan_keeps_the_full_window_when_eight_weeks_of_history_precede_it():
    # 274 days of history, N = 180: 94 days before the window describe customers; no scaling (seasonality)
    plan = plan_predict(date(2024, 10, 1), 180, first_day=date(2024, 1, 1))
    assert (plan.label_days, plan.scaled, plan.train_cutoff) == (180, False, date(2024, 4, 4))
    # 117 days, N = 90: only 27 days would precede the window, so the history is split in half and scaled
    plan = plan_predict(date(2024, 4, 27), 90, first_day=date(2024, 1, 1))
    assert (plan.label_days, plan.scaled) == (58, True)
    # a short horizon needs no more history before it than its own length
    assert plan_predict(date(2024, 3, 1), 30, first_day=date(2024, 1, 1)).label_days == 30


def test_plan_splits_short_history_in_half_and_scales():
    plan = plan_predict(date(2024, 10, 1), 365, first_day=date(2024, 1, 1))  # 274 days of history
    assert plan.label_days == 137 and plan.train_cutoff == date(2024, 10, 1) - timedelta(days=137)
    assert plan.scale == pytest.approx(365 / 137) and plan.scaled and "x 2.66" in plan.describe()
    assert plan.train_cutoffs[0] == plan.train_cutoff - timedelta(days=34)
    with pytest.raises(UserError, match="history"):
        plan_predict(date(2024, 1, 10), 365, first_day=date(2024, 1, 1))
    # too little history for an earlier cutoff: one cutoff, calibrated on the members' out-of-fold predictions
    assert plan_predict(date(2024, 1, 20), 365, first_day=date(2024, 1, 1)).train_cutoffs == (date(2024, 1, 11),)


def test_probability_extrapolation_under_constant_hazard():
    p = np.array([0.0, 0.2, 0.5, 1.0])
    assert extrapolate_prob(p, 1.0) == pytest.approx(p)
    assert extrapolate_prob(p, 2.0) == pytest.approx([0.0, 0.36, 0.75, 1.0])

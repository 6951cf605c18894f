"""Calibration of the expected LTV: fixes a biased level without changing the ranking, survives save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from ltvfeed.errors import UserError
from ltvfeed.simulator.btyd_customers import make_shop
from ltvfeed.training.calibration import MeanCalibration
from ltvfeed.training.fit import LtvModel, TrainConfig
from ltvfeed.training.metrics import decile_table, total_ratio


def biased_world(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Actual revenue drawn around a true mean; the 'model' predicts 1.3 x the mean (the ZILN mean's bias)."""
    rng = np.random.default_rng(seed)
    mean = rng.lognormal(3.0, 1.2, n)
    actual = np.where(rng.random(n) < 0.4, rng.gamma(2.0, mean / 0.8), 0.0)  # E[actual] = 0.4 * 2 * mean / 0.8
    return 1.3 * mean, actual


def test_calibration_removes_a_constant_bias_and_keeps_the_order() -> None:
    raw, actual = biased_world()
    calibration = MeanCalibration.fit(raw, actual)
    assert 2 <= len(calibration.knots_x) <= 20
    calibrated = calibration.calibrate(raw)
    assert total_ratio(actual, raw) == pytest.approx(1.3, rel=0.05)
    assert total_ratio(actual, calibrated) == pytest.approx(1.0, abs=0.03)
    # Same order, strictly: no new ties.
    assert spearmanr(raw, calibrated).statistic == pytest.approx(1.0)
    assert len(np.unique(calibrated)) == len(np.unique(raw))
    # Out of sample (a fresh draw of the same world) the deciles are right too.
    raw2, actual2 = biased_world(seed=1)
    table = decile_table(actual2, calibration.calibrate(raw2))
    assert table["ape"].iloc[3:].max() < 0.15
    assert decile_table(actual2, raw2)["ape"].iloc[3:].min() > 0.2


def test_calibration_is_monotone_with_extrapolation_and_zero() -> None:
    calibration = MeanCalibration((1.0, 10.0, 100.0), (2.0, 5.0, 50.0))
    values = calibration.calibrate(np.array([0.0, 0.5, 1.0, 5.5, 10.0, 100.0, 300.0]))
    assert values[0] == 0.0
    assert values[1:] == pytest.approx([1.0, 2.0, 3.5, 5.0, 50.0, 150.0])
    assert np.all(np.diff(values) > 0)
    assert calibration.factor(np.array([0.0, 300.0])) == pytest.approx([1.0, 0.5])


def test_too_few_buyers_leave_the_identity() -> None:
    raw = np.linspace(1, 10, 500)
    actual = np.zeros(500)
    actual[[10, 400]] = 5.0
    assert MeanCalibration.fit(raw, actual).is_identity
    assert MeanCalibration.fit(raw, np.zeros(500)).is_identity
    assert MeanCalibration().calibrate(raw) == pytest.approx(raw)


def test_invalid_knots_are_rejected_with_the_reason() -> None:
    with pytest.raises(UserError, match="increasing"):
        MeanCalibration((1.0, 1.0), (1.0, 2.0))
    with pytest.raises(UserError, match="non-decreasing"):
        MeanCalibration((1.0, 2.0), (2.0, 1.0))
    with pytest.raises(UserError, match="knots"):
        MeanCalibration((1.0,), (1.0, 2.0))
    with pytest.raises(UserError, match="actual values"):
        MeanCalibration.fit(np.ones(3), np.ones(4))


def test_fitted_model_is_calibrated_and_the_calibration_is_saved(tmp_path) -> None:
    df, y = make_shop(3000, seed=5)
    config = TrainConfig(
        max_epochs=10, patience=3, batch_size=256, num_threads=1, seed=1, members=1, btyd_inputs=False, btyd_blend=False
    )
    model = LtvModel(horizon_days=90, config=config).fit(df, y)
    assert model.report.calibration_knots >= 2 and model.report.calibration_source == "validation"
    raw_model = LtvModel(horizon_days=90, config=TrainConfig(**{**config.__dict__, "calibration_bins": 0})).fit(df, y)
    assert raw_model.report.calibration_knots == 0 and raw_model.module.calibration.is_identity

    val = model.validation_index
    calibrated = model.predict(df.loc[val])
    raw = raw_model.predict(df.loc[val])  # same seed and data: the same network before calibration
    # On the users it was fitted on, the calibrated total matches; the ranking is the network's.
    assert total_ratio(y[val], calibrated["expected_ltv"]) == pytest.approx(1.0, abs=0.02)
    assert spearmanr(raw["expected_ltv"], calibrated["expected_ltv"]).statistic == pytest.approx(1.0)
    # The whole revenue distribution is rescaled: quantiles move with the mean, P(buys again) does not.
    factor = calibrated["expected_ltv"] / raw["expected_ltv"]
    assert calibrated["p90"].to_numpy() == pytest.approx((raw["p90"] * factor).to_numpy())
    assert calibrated["prob_return"].to_numpy() == pytest.approx(raw["prob_return"].to_numpy())

    restored = LtvModel.load(model.save(tmp_path / "model"))
    assert restored.module.calibration == model.module.calibration
    assert restored.predict(df.head(100)).equals(model.predict(df.head(100)))


def test_ensemble_calibrates_on_every_users_out_of_fold_prediction() -> None:
    df, y = make_shop(3000, seed=5)
    config = TrainConfig(max_epochs=10, patience=3, batch_size=256, num_threads=1, seed=1, members=3)
    model = LtvModel(horizon_days=90, config=config).fit(df, y)
    report = model.report
    assert report.calibration_source == "out_of_fold" and report.calibration_rows == len(df)
    # each user validated by exactly one member: the folds partition the users
    assert sum(m.n_validation for m in report.members) == len(df)
    assert all(m.n_train + m.n_validation == len(df) for m in report.members)
    # the level is learned on all users, not on one fifth of them
    assert total_ratio(y, model.predict(df)["expected_ltv"]) == pytest.approx(1.0, abs=0.06)


def test_calibration_is_learned_out_of_time_on_the_latest_period() -> None:
    early, y_early = make_shop(2000, seed=5)
    late, y_late = make_shop(2000, seed=6)
    late = late.assign(user_id=late["user_id"] + "_late")
    df = pd.concat([early, late], ignore_index=True)
    y = np.concatenate([y_early, 2.0 * y_late])  # the later window spends more: only out of time can see it
    periods = np.repeat(["2025-01-01", "2025-02-01"], [len(early), len(late)])
    config = TrainConfig(max_epochs=10, patience=3, batch_size=256, num_threads=1, seed=1, members=2)
    model = LtvModel(horizon_days=90, config=config).fit(df, y, periods=periods)
    report = model.report
    assert report.calibration_source == "out_of_time" and report.calibration_rows == len(late)
    assert all(m.n_train + m.n_validation == len(early) for m in report.members)  # no member saw the late rows
    assert total_ratio(y[len(early) :], model.predict(late)["expected_ltv"]) == pytest.approx(1.0, abs=0.03)
    in_time = LtvModel(horizon_days=90, config=config).fit(df, y)  # no periods: calibrated on both windows
    assert total_ratio(y[len(early) :], in_time.predict(late)["expected_ltv"]) < 0.9

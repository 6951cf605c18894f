"""Metrics on examples small enough to check by hand, and the evaluation table and charts built on them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ltvfeed.training.metrics import (
    METRIC_COLUMNS,
    auc,
    decile_mape,
    decile_mape_noise,
    decile_mape_valued,
    decile_table,
    evaluate,
    gain_curve,
    gini,
    normalized_gini,
    paired_difference,
    spearman,
    top_decile_capture,
    total_error,
    total_ratio,
    vwde,
)
from ltvfeed.training.plots import calibration_plot, decile_chart, gain_chart

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_gini_by_hand() -> None:
    y = [0.0, 0.0, 0.0, 10.0]
    # Perfect order: cumulative share 1, 1, 1, 1 after each customer; trapezoid area under (0,0)..(1,1)
    # = (1/4) * (0.5 + 1 + 1 + 1) = 0.875, so Gini = 2 * 0.875 - 1 = 0.75.
    assert gini(y, [0, 0, 0, 5]) == pytest.approx(0.75)
    # Worst order: shares 0, 0, 0, 1: area = (1/4) * 0.5 = 0.125, Gini = -0.75.
    assert gini(y, [4, 3, 2, 1]) == pytest.approx(-0.75)
    assert normalized_gini(y, [1, 2, 3, 4]) == pytest.approx(1.0)
    assert normalized_gini(y, [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_normalized_gini_partial_ranking_by_hand() -> None:
    y = [1.0, 2.0, 3.0, 4.0]  # total 10
    # Predicted order: 4, 2, 3, 1 -> shares 0.4, 0.6, 0.9, 1.0; area = (1/4)(0.2 + 0.5 + 0.75 + 0.95) = 0.6.
    # Perfect order: 4, 3, 2, 1 -> 0.4, 0.7, 0.9, 1.0; area = (1/4)(0.2 + 0.55 + 0.8 + 0.95) = 0.625.
    assert normalized_gini(y, [0.1, 0.9, 0.5, 1.0]) == pytest.approx((2 * 0.6 - 1) / (2 * 0.625 - 1))


def test_constant_prediction_has_zero_gini_whatever_the_row_order() -> None:
    y = np.array([0.0, 5.0, 0.0, 1.0, 20.0])
    assert gini(y, np.ones(5)) == pytest.approx(0.0, abs=1e-12)
    assert gini(y[::-1], np.ones(5)) == pytest.approx(0.0, abs=1e-12)
    customers, cumulative = gain_curve(y, np.ones(5))
    assert np.allclose(cumulative, customers)


def test_spearman() -> None:
    y = [1.0, 5.0, 2.0, 9.0]
    assert spearman(y, np.log(y)) == pytest.approx(1.0)
    assert spearman(y, [-v for v in y]) == pytest.approx(-1.0)
    assert math.isnan(spearman(y, [3.0] * 4))


def test_decile_mape_by_hand() -> None:
    y = np.arange(1, 21, dtype=float)  # two customers per decile
    pred = 1.1 * y  # 10% high everywhere
    assert decile_mape(y, pred) == pytest.approx(0.1)
    table = decile_table(y, pred)
    assert table["n"].tolist() == [2] * 10
    assert table["actual_mean"].tolist() == pytest.approx([1.5 + 2 * i for i in range(10)])
    # Bottom decile: predicted mean (1.5 + 2.5) / 2 = 2 vs actual (1 + 2) / 2 = 1.5 -> 1/3; the other nine
    # deciles exact -> mean over 10 deciles = 1/30.
    skewed = y.copy()
    skewed[:2] = [1.5, 2.5]
    assert decile_mape(y, skewed) == pytest.approx(1 / 30)


def test_decile_mape_leaves_out_deciles_without_value() -> None:
    y = np.array([0.0] * 10 + [10.0] * 10)
    pred = np.array([0.5] * 10 + [12.0] * 10)  # bottom half: nothing to be a percentage of
    table = decile_table(y, pred)
    assert table["ape"].isna().sum() == 5
    assert decile_mape(y, pred) == pytest.approx(0.2)


def test_vwde_by_hand() -> None:
    y = np.arange(1, 21, dtype=float)  # total 210, two customers per decile
    assert vwde(y, 1.1 * y) == pytest.approx(0.1)  # every decile 10 % high: 0.1 x 210 / 210
    skewed = y.copy()
    skewed[:2] = [1.5, 2.5]  # bottom decile predicted 4 against 3 realised, the rest exact
    assert vwde(y, skewed) == pytest.approx(1 / 210)
    assert vwde(y, y) == 0.0


def test_vwde_sees_errors_that_cancel_in_the_total() -> None:
    y = np.array([0.0] * 10 + [10.0] * 10)  # total 100
    pred = np.array([1.0] * 10 + [9.0] * 10)  # total 100 as well
    assert total_error(y, pred) == pytest.approx(0.0)
    # Deciles 0-4: predicted 2, realised 0 -> 5 x 2; deciles 5-9: predicted 18, realised 20 -> 5 x 2.
    assert vwde(y, pred) == pytest.approx(20 / 100)
    # Only deciles 5-9 hold value, each 10 % low.
    assert decile_mape_valued(y, pred) == pytest.approx(0.1)


def test_decile_mape_valued_leaves_out_deciles_below_one_percent_of_the_value() -> None:
    y = np.array([0.1, 0.1] + [10.0] * 18)  # total 180.2: the bottom decile holds 0.11 %
    pred = np.array([1.0, 1.0] + [10.0] * 18)  # bottom decile 10x too high, the rest exact
    assert decile_mape(y, pred) == pytest.approx(9.0 / 10)
    assert decile_mape_valued(y, pred) == pytest.approx(0.0)
    assert decile_mape_valued(y, pred, min_share=0.001) == pytest.approx(9.0 / 10)
    assert vwde(y, pred) == pytest.approx(1.8 / 180.2)


def test_total_error_by_hand_and_nan_without_value() -> None:
    assert total_error([10.0, 30.0], [12.0, 30.0]) == pytest.approx(0.05)
    assert total_error([10.0, 30.0], [10.0, 20.0]) == pytest.approx(-0.25)
    zeros = np.zeros(20)
    assert math.isnan(total_error(zeros, np.ones(20)))
    assert math.isnan(vwde(zeros, np.ones(20)))
    assert math.isnan(decile_mape_valued(zeros, np.ones(20)))


def test_decile_mape_noise_is_small_where_every_decile_holds_many_buyers() -> None:
    n = 100_000
    mu = np.linspace(1.0, 4.0, n)
    noise = decile_mape_noise(np.full(n, 0.5), mu, np.full(n, 0.5), draws=50)
    # 5,000 buyers per decile, sigma 0.5: each decile's mean is within about 1 % of its expectation.
    assert noise.draws == 50
    assert noise.low <= noise.median <= noise.high < 0.03
    assert noise.share_below == 1.0


def test_decile_mape_noise_is_large_where_deciles_hold_a_buyer_or_two() -> None:
    n = 10_000
    rng = np.random.default_rng(1)
    p = rng.uniform(0.0, 4e-3, n)  # about 2 expected buyers per 1,000-user decile
    noise = decile_mape_noise(p, np.full(n, 3.0), np.full(n, 1.0), draws=100)
    # Poisson counts with a mean of 2: a perfectly right model is off by about 60 % per decile.
    assert noise.median > 0.4
    assert noise.share_below < 0.05


def test_decile_mape_noise_matches_the_metric_on_the_same_draw() -> None:
    """The noise is the ordinary decile MAPE of the exact expectation against each drawn future."""
    n = 2_000
    rng = np.random.default_rng(5)
    p, mu, sigma = rng.uniform(0.05, 0.9, n), rng.normal(2.0, 0.5, n), rng.uniform(0.2, 1.0, n)
    one = decile_mape_noise(p, mu, sigma, draws=1, seed=9)
    draw = np.random.default_rng(9)
    future = np.where(draw.random(n) < p, np.exp(mu + sigma * draw.standard_normal(n)), 0.0)
    assert one.median == pytest.approx(decile_mape(future, p * np.exp(mu + sigma**2 / 2)))
    assert decile_mape_noise(p, mu, sigma, draws=20, seed=4) == decile_mape_noise(p, mu, sigma, draws=20, seed=4)


def test_decile_mape_noise_rejects_bad_parameters() -> None:
    ones = np.ones(20)
    with pytest.raises(ValueError, match="one value per user"):
        decile_mape_noise(ones, ones[:10], ones)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        decile_mape_noise(ones * 2, ones, ones)
    with pytest.raises(ValueError, match="no draw had any revenue"):
        decile_mape_noise(ones * 0, ones, ones, draws=3)


def test_auc_by_hand() -> None:
    # Pairs (positive, negative): (0.35 vs 0.1) ok, (0.35 vs 0.4) wrong, (0.8 vs both) ok -> 3 of 4.
    assert auc([0.0, 0.0, 3.0, 1.0], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auc([0.0, 2.0], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts half
    assert math.isnan(auc([1.0, 2.0], [0.1, 0.2]))


def test_top_decile_capture_and_total_ratio() -> None:
    y = np.array([50.0] + [5.0] * 9 + [0.0] * 10)  # total 95
    pred = np.array([9.0, 8.0] + [1.0] * 18)
    # Top 10% = 2 customers: 50 + 5 of 95.
    assert top_decile_capture(y, pred) == pytest.approx(55 / 95)
    assert total_ratio(y, pred) == pytest.approx(35 / 95)


def test_evaluate_compares_models() -> None:
    rng = np.random.default_rng(0)
    y = rng.gamma(0.5, 50, size=400) * (rng.random(400) < 0.4)
    good = y + rng.normal(0, 5, size=400).clip(0)
    frame = pd.DataFrame({"expected_ltv": good, "prob_return": (y > 0) * 0.9 + 0.05})
    table = evaluate(y, {"good": good, "frame": frame, "noise": rng.random(400) * y.mean()})
    assert list(table.index) == ["good", "frame", "noise"]
    assert list(table.columns) == list(METRIC_COLUMNS)
    assert table.loc["good", "normalized_gini"] > 0.9 > abs(table.loc["noise", "normalized_gini"])
    assert table.loc["frame", "auc_buys_again"] == pytest.approx(1.0)  # from its prob_return column
    assert table.loc["good", "normalized_gini"] == pytest.approx(table.loc["frame", "normalized_gini"])


def test_metrics_reject_mismatched_or_missing_values() -> None:
    with pytest.raises(ValueError, match="values"):
        normalized_gini([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        spearman([1.0, np.nan], [1.0, 2.0])


def test_charts_are_written_as_png(tmp_path) -> None:
    rng = np.random.default_rng(1)
    y = rng.gamma(0.5, 50, size=300) * (rng.random(300) < 0.5)
    pred = y * 0.8 + 5
    prob = np.clip(pred / pred.max(), 0, 1)
    paths = [
        gain_chart(y, {"model": pred, "random": rng.random(300)}, tmp_path / "gain.png"),
        decile_chart(y, pred, tmp_path / "charts" / "deciles.png"),
        calibration_plot(y, pred, tmp_path / "calibration.png", prob_return=prob),
        calibration_plot(y, pred, tmp_path / "calibration_value_only.png"),
    ]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_paired_difference_separates_a_real_gap_from_a_tie() -> None:
    rng = np.random.default_rng(0)
    y = np.where(rng.random(4000) < 0.3, rng.lognormal(3, 1, 4000), 0.0)
    informed = y + rng.normal(0, 5, y.size)  # knows the future, with noise
    blind = rng.random(y.size)
    gap = paired_difference(y, informed, blind, spearman)
    assert gap.low > 0.3 and gap.low <= gap.difference <= gap.high
    same = paired_difference(y, informed, informed.copy(), normalized_gini)
    assert same.difference == same.low == same.high == 0.0
    # two equally informed models: a tie, the interval holds 0
    other = y + rng.normal(0, 5, y.size)
    tie = paired_difference(y, informed, other, spearman, draws=100)
    assert tie.low < 0 < tie.high and str(tie).startswith(("+", "-"))
    with pytest.raises(ValueError, match="one value per customer"):
        paired_difference(y, informed[:-1], blind, spearman)

"""Baselines: naive arithmetic, BG/NBD + Gamma-Gamma likelihoods by hand, recovery of known parameters
from simulated customers, and the conditional predictions against what the simulation actually did."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ltvfeed.errors import UserError
from ltvfeed.simulator.btyd_customers import simulate_bgnbd_population
from ltvfeed.training.baselines import (
    BgnbdParams,
    BtydBaseline,
    GammaGammaParams,
    NaiveBaseline,
    bgnbd_expected_purchases,
    bgnbd_log_likelihood,
    bgnbd_prob_alive,
    bgnbd_prob_purchase,
    btyd_summary,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_expected_value,
    gamma_gamma_log_likelihood,
)

TRUE_BGNBD = BgnbdParams(r=0.8, alpha=40.0, a=1.5, b=4.0)
TRUE_GG = GammaGammaParams(p=3.0, q=5.0, gamma=200.0)


@pytest.fixture(scope="module")
def population():
    return simulate_bgnbd_population(
        20_000, **vars(TRUE_BGNBD), **vars(TRUE_GG), T_range=(180.0, 540.0), horizon_days=90.0, seed=7
    )


def test_naive_scales_past_spend_to_the_horizon() -> None:
    df = pd.DataFrame({"monetary_total": [100.0, 30.0, 0.0, 50.0], "tenure_days": [50.0, 0.25, 10.0, None]})
    out = NaiveBaseline(horizon_days=90).fit(df).predict(df)
    # 100 / 50 * 90; tenure under one day counts as one day; no spend -> 0; missing tenure -> one day.
    assert out["expected_ltv"].tolist() == pytest.approx([180.0, 30.0 * 90, 0.0, 50.0 * 90])
    with pytest.raises(UserError, match="tenure_days"):
        NaiveBaseline().predict(df[["monetary_total"]])


def test_bgnbd_likelihood_matches_the_paper_formula_by_hand() -> None:
    r, alpha, a, b = 0.5, 10.0, 0.7, 2.0
    x, t_x, T = 3, 20.0, 30.0
    g = math.gamma
    a1 = g(r + x) * alpha**r / g(r)
    a2 = g(a + b) * g(b + x) / (g(b) * g(a + b + x))
    a3 = (1 / (alpha + T)) ** (r + x)
    a4 = (a / (b + x - 1)) * (1 / (alpha + t_x)) ** (r + x)
    got = bgnbd_log_likelihood(BgnbdParams(r, alpha, a, b), np.array([x, 0]), np.array([t_x, 0.0]), np.array([T, 50.0]))
    assert got[0] == pytest.approx(math.log(a1 * a2 * (a3 + a4)), rel=1e-10)
    # x = 0: A1 = alpha^r, A2 = 1 and only A3 = (alpha + T)^-r remains.
    assert got[1] == pytest.approx(math.log(alpha**r * (1 / (alpha + 50.0)) ** r), rel=1e-10)


def test_prob_alive_by_hand() -> None:
    r, alpha, a, b = 0.5, 10.0, 0.7, 2.0
    params = BgnbdParams(r, alpha, a, b)
    got = bgnbd_prob_alive(params, np.array([3.0, 0.0]), np.array([20.0, 0.0]), np.array([30.0, 30.0]))
    assert got[0] == pytest.approx(1 / (1 + a / (b + 2) * ((alpha + 30) / (alpha + 20)) ** (r + 3)))
    assert got[1] == 1.0  # no repeat purchase: nothing could have killed them yet


def test_gamma_gamma_by_hand() -> None:
    p, q, gam = 2.0, 3.0, 50.0
    x, m = 4.0, 30.0
    g = math.gamma
    by_hand = g(p * x + q) / (g(p * x) * g(q)) * gam**q * m ** (p * x - 1) * x ** (p * x) / (gam + m * x) ** (p * x + q)
    params = GammaGammaParams(p, q, gam)
    assert gamma_gamma_log_likelihood(params, np.array([x]), np.array([m]))[0] == pytest.approx(math.log(by_hand))
    ev = gamma_gamma_expected_value(params, np.array([x, 0.0]), np.array([m, 0.0]))
    assert ev[0] == pytest.approx((gam + m * x) * p / (p * x + q - 1))
    assert ev[1] == pytest.approx(gam * p / (q - 1))  # no history: population mean


def test_mle_recovers_simulated_bgnbd_parameters(population) -> None:
    fitted = fit_bgnbd(population.frequency, population.recency, population.T)
    assert fitted.r == pytest.approx(TRUE_BGNBD.r, rel=0.15)
    assert fitted.alpha == pytest.approx(TRUE_BGNBD.alpha, rel=0.15)
    assert fitted.a == pytest.approx(TRUE_BGNBD.a, rel=0.35)
    assert fitted.b == pytest.approx(TRUE_BGNBD.b, rel=0.35)
    # The optimum beats the truth on this sample (it is the maximum), and a bad guess is far worse.
    args = (population.frequency, population.recency, population.T)
    assert bgnbd_log_likelihood(fitted, *args).sum() >= bgnbd_log_likelihood(TRUE_BGNBD, *args).sum()


def test_mle_recovers_simulated_gamma_gamma_parameters(population) -> None:
    fitted = fit_gamma_gamma(population.frequency, population.monetary_value)
    assert fitted.p == pytest.approx(TRUE_GG.p, rel=0.2)
    assert fitted.q == pytest.approx(TRUE_GG.q, rel=0.2)
    assert fitted.gamma == pytest.approx(TRUE_GG.gamma, rel=0.3)


def test_conditional_predictions_match_the_simulated_future(population) -> None:
    args = (population.frequency, population.recency, population.T)
    expected = bgnbd_expected_purchases(TRUE_BGNBD, 90.0, *args)
    assert expected.sum() == pytest.approx(population.future_purchases.sum(), rel=0.05)
    assert bgnbd_prob_alive(TRUE_BGNBD, *args).sum() == pytest.approx(population.alive_at_T.sum(), rel=0.03)
    buyers = (population.future_purchases > 0).sum()
    assert bgnbd_prob_purchase(TRUE_BGNBD, 90.0, *args).sum() == pytest.approx(buyers, rel=0.05)
    # Conditioning matters: the frequent, recent half buys far more than the rest, as predicted.
    busy = population.frequency >= np.median(population.frequency)
    assert expected[busy].sum() == pytest.approx(population.future_purchases[busy].sum(), rel=0.07)


def test_btyd_summary_from_a_user_features_frame_by_hand() -> None:
    cutoff = pd.Timestamp("2026-01-01", tz="UTC")
    df = pd.DataFrame(
        {
            "frequency": [3, 1, 0],  # orders, the first included
            "monetary_total": [90.0, 20.0, 0.0],
            "first_order_at": [cutoff - pd.Timedelta(days=100), cutoff - pd.Timedelta(hours=36), pd.NaT],
            "last_order_at": [cutoff - pd.Timedelta(days=40), cutoff - pd.Timedelta(hours=36), pd.NaT],
            "feature_timestamp": cutoff,
        }
    )
    summary = btyd_summary(df)
    assert summary["frequency"].tolist() == [2, 0, 0]
    assert summary["recency"].tolist() == pytest.approx([60.0, 0.0, 0.0])
    assert summary["T"].tolist() == pytest.approx([100.0, 1.5, 0.0])
    assert summary["monetary_value"].tolist() == pytest.approx([30.0, 20.0, 0.0])
    assert summary["is_customer"].tolist() == [True, True, False]
    with pytest.raises(UserError, match="after the cutoff"):
        btyd_summary(df.assign(feature_timestamp=cutoff - pd.Timedelta(days=50)))


def test_btyd_baseline_on_a_user_features_frame(population) -> None:
    cutoff = pd.Timestamp("2026-01-01", tz="UTC")
    first = cutoff - pd.to_timedelta(population.T, unit="D")
    customers = pd.DataFrame(
        {
            "frequency": population.frequency + 1,
            "monetary_total": population.first_value + population.monetary_value * population.frequency,
            "first_order_at": first,
            "last_order_at": first + pd.to_timedelta(population.recency, unit="D"),
            "feature_timestamp": cutoff,
        }
    )
    never_ordered = pd.DataFrame(
        {"frequency": [0] * 3, "monetary_total": 0.0, "first_order_at": pd.NaT, "last_order_at": pd.NaT}
    ).assign(feature_timestamp=cutoff)
    df = pd.concat([customers, never_ordered], ignore_index=True).set_axis(pd.RangeIndex(100, 100 + len(customers) + 3))
    model = BtydBaseline(horizon_days=90).fit(df)
    out = model.predict(df)
    assert out.index.equals(df.index)
    assert set(out.columns) >= {"expected_ltv", "prob_return", "prob_alive", "expected_purchases"}
    assert np.allclose(out["expected_ltv"], out["expected_purchases"] * out["expected_order_value"])
    assert out["prob_return"].between(0, 1).all() and (out["prob_return"] <= out["prob_alive"] + 1e-12).all()
    assert (out.iloc[-3:][["expected_ltv", "prob_return", "prob_alive"]] == 0).all().all()
    assert model.bgnbd.r == pytest.approx(TRUE_BGNBD.r, rel=0.15)
    # Means over all orders instead of repeat ones: the total is still about right.
    assert out["expected_ltv"].sum() == pytest.approx(population.future_value.sum(), rel=0.1)
    with pytest.raises(UserError, match="not fitted"):
        BtydBaseline().predict(df)
    with pytest.raises(UserError, match="last_order_at"):
        model.predict(df.drop(columns="last_order_at"))

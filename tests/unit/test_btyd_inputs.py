"""BG/NBD + Gamma-Gamma outputs as network inputs: the summary from day counts, the fit, and what the saved model
carries (and that a model saved before ensembles and BTYD inputs still loads)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ltvfeed.simulator.btyd_customers import make_shop
from ltvfeed.training.baselines import BtydBaseline, btyd_summary
from ltvfeed.training.btyd_inputs import COLUMNS, BtydInputs, summary_from_days
from ltvfeed.training.fit import SPEC_FILE, WEIGHTS_FILE, LtvModel, TrainConfig, blend_weights

QUICK = TrainConfig(max_epochs=6, patience=3, batch_size=256, num_threads=1, seed=2, members=2, btyd_inputs=True)


@pytest.fixture(scope="module")
def shop() -> tuple[pd.DataFrame, np.ndarray]:
    return make_shop(1500, seed=4)


def test_summary_from_day_counts_matches_the_one_from_order_timestamps(shop) -> None:
    df, _ = shop
    # a transaction log: first seen = first order, so tenure is the customer's age T
    first = pd.to_datetime(df["first_order_at"], utc=True)
    cutoff = pd.to_datetime(df["feature_timestamp"], utc=True)
    log_like = df.assign(tenure_days=((cutoff - first).dt.total_seconds() / 86400).to_numpy())
    log_like["recency_days"] = (cutoff - pd.to_datetime(df["last_order_at"], utc=True)).dt.total_seconds() / 86400
    ours, reference = summary_from_days(log_like), btyd_summary(df)
    for column in ("frequency", "recency", "T", "monetary_value", "is_customer"):
        np.testing.assert_allclose(ours[column].astype(float), reference[column].astype(float), rtol=1e-9, atol=1e-6)


def test_inputs_are_the_fitted_baselines_predictions(shop) -> None:
    df, _ = shop
    inputs = BtydInputs.fit(df, 90)
    assert inputs is not None
    baseline = BtydBaseline(90).fit_summary(summary_from_days(df).query("is_customer"))
    assert (inputs.bgnbd, inputs.gamma_gamma) == (baseline.bgnbd, baseline.gamma_gamma)
    added = inputs.add_to(df)
    expected = baseline.predict_summary(summary_from_days(df))
    np.testing.assert_allclose(added["btyd_expected_ltv"], expected["expected_ltv"])
    np.testing.assert_allclose(added["btyd_prob_alive"], expected["prob_alive"])
    assert list(added.columns) == [*df.columns, *COLUMNS] and "btyd_prob_alive" not in df.columns  # df untouched
    assert BtydInputs.from_spec(json.loads(json.dumps(inputs.to_spec()))) == inputs


def test_no_btyd_inputs_without_rfm_columns_or_repeat_customers(shop) -> None:
    df, _ = shop
    assert BtydInputs.fit(df.drop(columns="recency_days"), 90) is None
    assert BtydInputs.fit(df.assign(frequency=1), 90) is None  # nobody ever bought twice: Gamma-Gamma cannot fit


def test_the_network_reads_them_and_its_saved_model_recomputes_them(shop, tmp_path) -> None:
    df, y = shop
    model = LtvModel(90, QUICK).fit(df, y)
    assert set(COLUMNS) <= set(model.feature_columns) and len(model.module.members) == 2
    restored = LtvModel.load(model.save(tmp_path / "m"))
    assert restored.module.btyd == model.module.btyd
    pd.testing.assert_frame_equal(restored.predict(df), model.predict(df), check_exact=True)
    blend_only = LtvModel(90, TrainConfig(**{**QUICK.__dict__, "btyd_inputs": False})).fit(df, y)
    assert blend_only.module.btyd is not None and not set(COLUMNS) & set(blend_only.feature_columns)
    without = LtvModel(90, TrainConfig(**{**QUICK.__dict__, "btyd_inputs": False, "btyd_blend": False})).fit(df, y)
    assert without.module.btyd is None and without.module.btyd_weight == 0


def test_a_model_saved_before_ensembles_still_loads(shop, tmp_path) -> None:
    df, y = shop
    plain = {"members": 1, "btyd_inputs": False, "btyd_blend": False}
    single = LtvModel(90, TrainConfig(**{**QUICK.__dict__, **plain})).fit(df, y)
    directory = single.save(tmp_path / "v2")
    # rewrite it the way format 1 stored one network: layers at the top level, no members or BTYD in the spec
    spec = json.loads((directory / SPEC_FILE).read_text())
    spec["format_version"] = 1
    for key in ("members", "btyd", "btyd_weight", "naive_weight"):
        spec["network"].pop(key)
    old = tmp_path / "v1"
    old.mkdir()
    (old / SPEC_FILE).write_text(json.dumps(spec))
    state = torch.load(directory / WEIGHTS_FILE, weights_only=True)
    torch.save({k.removeprefix("members.0."): v for k, v in state.items()}, old / WEIGHTS_FILE)
    pd.testing.assert_frame_equal(LtvModel.load(old).predict(df), single.predict(df), check_exact=True)


def test_the_blend_takes_the_classic_models_where_they_rank_better() -> None:
    rng = np.random.default_rng(0)
    y = rng.lognormal(3, 1, 4000) * (rng.random(4000) < 0.3)
    informed = y * rng.lognormal(0, 0.3, y.size) + 0.1
    noise, other = rng.lognormal(3, 1, y.size), rng.lognormal(3, 1, y.size)
    assert blend_weights(informed, noise, other, y) == (0.0, 0.0)  # the network ranks: it alone is served
    assert blend_weights(noise, informed, other, y) == (1.0, 0.0)  # it learned nothing that carries over: BG/NBD
    assert blend_weights(noise, other, informed, y) == (0.0, 1.0)  # ... or the naive rate, whichever ranks
    w_b, w_n = blend_weights(informed + 3 * noise, informed + 3 * noise[::-1], other, y)
    assert 0.0 < w_b < 1.0 and w_n == 0.0  # two noisy views of the same signal: a mix
    assert blend_weights(informed, noise, other, np.zeros_like(y)) == (0.0, 0.0)  # nothing to judge on


def test_the_blend_reaches_each_classic_models_best_ranking_where_it_can() -> None:
    """The classic model knows who comes back (the best Spearman); the network knows roughly how much, not
    who. Judged by the sum of Spearman and Gini, a blend wins whose Spearman is below the classic's; the served
    blend must be at or above the better classic on both metrics when the grid has such a blend."""
    from ltvfeed.training.btyd_inputs import mix
    from ltvfeed.training.metrics import normalized_gini, spearman

    rng = np.random.default_rng(1)
    n = 20_000
    returns = rng.random(n) < 0.3
    y = np.where(returns, rng.lognormal(3, 1, n), 0.0)
    knows_who = 25 * np.where(returns, 1.0, 0.3) * rng.lognormal(0, 0.3, n)  # BG/NBD: who returns, not how much
    knows_how_much = np.where(returns, y, rng.lognormal(2.5, 1, n)) * rng.lognormal(0, 0.2, n)  # network
    naive = rng.lognormal(3, 1, n)
    assert spearman(y, knows_how_much) < spearman(y, knows_who)  # the network alone ranks below BG/NBD
    w_b, w_n = blend_weights(knows_how_much, knows_who, naive, y)
    served = mix(knows_how_much, knows_who, naive, w_b, w_n)
    assert spearman(y, served) >= spearman(y, knows_who)
    assert normalized_gini(y, served) >= max(normalized_gini(y, knows_who), normalized_gini(y, naive))


def test_a_blended_model_serves_one_distribution(shop) -> None:
    df, y = shop
    model = LtvModel(90, QUICK).fit(df, y)
    model.module.btyd_weight, model.module.naive_weight = 0.5, 0.25  # whatever was chosen, the served figures agree
    out = model.predict(df)
    dist = model.module.predictive_distribution(df)
    np.testing.assert_allclose(out["prob_return"], dist["prob_return"])
    np.testing.assert_allclose(out["expected_ltv"], dist["prob_return"] * np.exp(dist["mu"] + dist["sigma"] ** 2 / 2))
    p, raw = model.module.raw_prediction(df)
    np.testing.assert_allclose(out["expected_ltv"], model.module.calibration.calibrate(raw), rtol=1e-9)
    np.testing.assert_allclose(out["prob_return"], p)

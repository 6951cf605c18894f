"""LtvModel end to end on small synthetic shops: outputs, determinism, save/load, missing feature groups,
encoding edge cases, the validation split by user, early stopping."""

from __future__ import annotations

import io
import json
import logging
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import torch

from ltvfeed.errors import UserError
from ltvfeed.simulator.btyd_customers import make_shop
from ltvfeed.training.baselines import BtydBaseline, NaiveBaseline
from ltvfeed.training.btyd_inputs import COLUMNS as BTYD_COLUMNS
from ltvfeed.training.features import MISSING_INDEX, OOV_INDEX, FeatureEncoder
from ltvfeed.training.fit import LtvModel, TrainConfig, split_by_user
from ltvfeed.training.metrics import evaluate, normalized_gini
from ltvfeed.training.network import PREDICTION_COLUMNS
from ltvfeed.training.ziln import ziln_loss

RFM_COLUMNS = ["user_id", "frequency", "recency_days", "tenure_days", "monetary_avg", "monetary_total"]
QUICK = TrainConfig(max_epochs=12, patience=4, batch_size=256, num_threads=1, seed=3)


@pytest.fixture(scope="module")
def shop() -> tuple[pd.DataFrame, np.ndarray]:
    return make_shop(1500, seed=11)


@pytest.fixture(scope="module")
def fitted(shop) -> LtvModel:
    df, y = shop
    return LtvModel(horizon_days=90, config=QUICK).fit(df, y)


def test_predictions_are_a_coherent_distribution(fitted, shop) -> None:
    df, _ = shop
    scored = df.set_index(pd.Index(range(5000, 5000 + len(df))))
    out = fitted.predict(scored)
    assert list(out.columns) == list(PREDICTION_COLUMNS)
    assert out.index.equals(scored.index)
    assert np.isfinite(out.to_numpy()).all()
    assert out["prob_return"].between(0, 1).all()
    assert (out["expected_ltv"] >= 0).all()
    assert ((out["p10"] <= out["p50"]) & (out["p50"] <= out["p90"])).all()
    # Mixture quantiles: the median is 0 exactly for users more likely not to buy.
    assert (out.loc[out["prob_return"] < 0.5, "p50"] == 0).all()
    assert (out.loc[out["prob_return"] > 0.5, "p50"] > 0).all()


def test_predictive_distribution_is_the_one_the_predictions_summarise(fitted, shop) -> None:
    df, _ = shop
    out = fitted.predict(df)
    dist = fitted.module.predictive_distribution(df)
    assert dist.index.equals(df.index)
    assert not fitted.module.calibration.is_identity  # so the calibrated mu is what is checked
    mean = dist["prob_return"] * np.exp(dist["mu"] + dist["sigma"] ** 2 / 2)
    np.testing.assert_allclose(dist["prob_return"], out["prob_return"], rtol=1e-12)
    np.testing.assert_allclose(mean, out["expected_ltv"], rtol=1e-6)
    buys = dist["prob_return"] > 0.5  # there the median is the lognormal's at (0.5 - (1 - p)) / p
    assert 0 < buys.sum() < len(df)
    u = (0.5 - (1 - dist.loc[buys, "prob_return"])) / dist.loc[buys, "prob_return"]
    from scipy.special import ndtri

    median = np.exp(dist.loc[buys, "mu"] + dist.loc[buys, "sigma"] * ndtri(u))
    np.testing.assert_allclose(median, out.loc[buys, "p50"], rtol=1e-6)


def test_learns_who_is_valuable(shop) -> None:
    df, y = shop
    holdout, y_holdout = make_shop(1500, seed=12)
    model = LtvModel(config=TrainConfig(max_epochs=30, patience=5, batch_size=256, num_threads=1)).fit(df, y)
    pred = model.predict(holdout)["expected_ltv"]
    assert normalized_gini(y_holdout, pred) > 0.6
    assert pred.sum() / y_holdout.sum() == pytest.approx(1.0, abs=0.35)


def test_ranks_better_than_both_baselines_with_a_margin(shop) -> None:
    """The headline claim: on a later population the network ranks customers better than the naive rate and
    BG/NBD + Gamma-Gamma fitted on the same rows (measured 0.782 / 0.761 / 0.683 Gini, 0.508 / 0.483 / 0.356
    Spearman): by at least 0.01 on both, which a network reduced to raw spend does not reach."""
    df, y = shop
    holdout, y_holdout = make_shop(1500, seed=12)
    model = LtvModel(config=TrainConfig(max_epochs=30, patience=5, batch_size=256, num_threads=1)).fit(df, y)
    table = evaluate(
        y_holdout,
        {
            "ziln": model.predict(holdout),
            "btyd": BtydBaseline(90).fit(df).predict(holdout),
            "naive": NaiveBaseline(90).predict(holdout),
        },
    )
    for metric in ("normalized_gini", "spearman"):
        best_baseline = table.loc[["btyd", "naive"], metric].max()
        assert table.loc["ziln", metric] > best_baseline + 0.01, (metric, table[metric].to_dict())


def test_same_data_and_seed_give_identical_predictions(shop) -> None:
    df, y = shop
    config = TrainConfig(max_epochs=3, batch_size=256, num_threads=1, seed=5)
    rng_state = torch.random.get_rng_state()
    first = LtvModel(config=config).fit(df, y).predict(df)
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the caller's RNG is left alone
    torch.manual_seed(1234)  # global state must not matter
    second = LtvModel(config=config).fit(df, y).predict(df)
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    other_seed = LtvModel(config=TrainConfig(max_epochs=3, batch_size=256, num_threads=1, seed=6)).fit(df, y)
    assert not np.array_equal(other_seed.predict(df).to_numpy(), first.to_numpy())


def test_save_load_round_trips_exactly(fitted, shop, tmp_path) -> None:
    df, _ = shop
    directory = fitted.save(tmp_path / "ltv")
    spec = json.loads((directory / "spec.json").read_text())
    assert spec["horizon_days"] == 90
    assert {c["name"] for c in spec["network"]["features"]["categorical"]} == {
        "country",
        "gender",
        "acquisition_partner_id",
        "favourite_category",
    }
    loaded = LtvModel.load(directory)
    assert loaded.feature_columns == fitted.feature_columns
    pd.testing.assert_frame_equal(loaded.predict(df), fitted.predict(df), check_exact=True)
    with pytest.raises(UserError, match="not a saved LTV model"):
        LtvModel.load(tmp_path / "nothing-here")


def test_raw_module_scores_on_its_own(fitted, shop) -> None:
    df, _ = shop
    module = fitted.module
    assert isinstance(module, torch.nn.Module)
    assert "encoder.mean" in module.state_dict()  # normalisation travels with the weights
    pd.testing.assert_frame_equal(module.predict_frame(df.head(50)), fitted.predict(df.head(50)), check_exact=True)
    # Whole-module pickling (what mlflow.pytorch's pickle format does) keeps vocabularies and statistics.
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    pd.testing.assert_frame_equal(restored.predict_frame(df), fitted.predict(df), check_exact=True)


def test_transaction_log_only_shop(shop) -> None:
    df, y = shop
    model = LtvModel(config=QUICK).fit(df[RFM_COLUMNS], y)
    assert model.feature_columns == RFM_COLUMNS[1:]
    # BG/NBD + Gamma-Gamma outputs as inputs only when asked for
    with_btyd = LtvModel(config=TrainConfig(**{**QUICK.__dict__, "btyd_inputs": True})).fit(df[RFM_COLUMNS], y)
    assert with_btyd.feature_columns == [*RFM_COLUMNS[1:], *BTYD_COLUMNS]
    out = model.predict(df)  # extra columns at scoring time are ignored
    assert len(out) == len(df) and np.isfinite(out.to_numpy()).all()


def test_entirely_missing_column_is_dropped_with_a_note(shop, caplog) -> None:
    df, y = shop
    df = df[RFM_COLUMNS].assign(sessions_30d=np.nan, country=None)
    with caplog.at_level(logging.WARNING, logger="ltvfeed.training.features"):
        model = LtvModel(config=QUICK).fit(df, y)
    assert "sessions_30d" not in model.feature_columns and "country" not in model.feature_columns
    notes = " ".join(r.getMessage() for r in caplog.records)
    assert "'sessions_30d'" in notes and "'country'" in notes and "dropped" in notes
    assert np.isfinite(model.predict(df.drop(columns=["sessions_30d", "country"])).to_numpy()).all()


def test_unseen_categories_and_missing_values_at_scoring(fitted, shop) -> None:
    df, _ = shop
    odd = df.head(4).copy()
    odd["country"] = ["Atlantis", None, "US", "US"]
    odd["age"] = [np.nan, np.nan, 40.0, np.inf]
    odd["monetary_total"] = [None, 10.0, 10.0, -5.0]
    out = fitted.predict(odd)
    assert np.isfinite(out.to_numpy()).all()
    with pytest.raises(UserError, match="country"):
        fitted.predict(df.drop(columns="country"))


def test_encoder_handles_types_from_the_warehouse() -> None:
    df = pd.DataFrame(
        {
            "spend": [Decimal("10.50"), Decimal("0"), None, Decimal("99.99")] * 3,  # PostgreSQL numeric
            "partner": [17.0, 17.0, np.nan, 4.0] * 3,  # forced categorical ids arriving as floats
            "active": [True, False, True, False] * 3,
            "signup": pd.to_datetime(["2024-01-01"] * 12),
            "as_of": [date(2026, 1, 1)] * 12,  # dates arrive from the database as Python objects
        }
    )
    encoder = FeatureEncoder.fit(df, categorical_columns=["partner"], min_category_count=1)
    assert encoder.columns == ["spend", "active", "partner"]  # dates and times are not features
    assert encoder.numeric[0].log1p and encoder.numeric[0].missing_indicator
    assert encoder.categorical[0].vocabulary == ("17", "4")  # by frequency; 17.0 and 17 are one category
    numeric, categorical = encoder.encode(df.assign(partner=[17, 4, None, 99] * 3))
    assert numeric.shape == (12, 3) and torch.isfinite(numeric).all()
    assert categorical[:4, 0].tolist() == [2, 3, MISSING_INDEX, OOV_INDEX]
    with pytest.raises(UserError, match="no usable feature columns"):
        FeatureEncoder.fit(df[["signup"]].assign(empty=np.nan))


def test_validation_split_is_by_user() -> None:
    users = np.repeat([f"u{i}" for i in range(50)], 3)
    train, val = split_by_user(users, 0.2, seed=1)
    assert len(train) + len(val) == len(users) and not set(train) & set(val)
    assert not set(users[train]) & set(users[val])
    assert len(set(users[val])) == 10
    again, _ = split_by_user(users[::-1], 0.2, seed=1)  # the draw depends on who, not on row order
    assert set(users[::-1][again]) == set(users[train])


def test_early_stopping_keeps_the_best_epoch(shop) -> None:
    df, y = shop
    # Two snapshots per user: the split must keep both rows of a user on the same side.
    df = pd.concat([df, df.assign(tenure_days=df["tenure_days"] + 30)], ignore_index=True)
    y = np.concatenate([y, y])
    config = TrainConfig(max_epochs=60, patience=2, batch_size=128, learning_rate=1e-2, num_threads=1, members=1)
    model = LtvModel(config=config).fit(df, y)
    report = model.report
    assert report.stopped_early and len(report.history) < 60
    assert len(report.history) - config.patience <= report.best_epoch <= len(report.history)
    val = df.index.isin(model.validation_index)
    assert report.n_validation == val.sum() > 0
    assert not set(df.loc[val, "user_id"]) & set(df.loc[~val, "user_id"])
    # The weights kept are the best epoch's: their validation loss is the minimum of the history.
    numeric, categorical = model.module.encode(df[val])
    with torch.inference_mode():
        loss = ziln_loss(model.module(numeric, categorical), torch.tensor(y[val], dtype=torch.float32))
    best = min(r.val_loss for r in report.history)
    assert report.history[report.best_epoch - 1].val_loss == best
    assert float(loss) == pytest.approx(best, rel=1e-5)


def test_rejects_bad_labels(shop) -> None:
    df, y = shop
    with pytest.raises(UserError, match="negative"):
        LtvModel(config=QUICK).fit(df, -y - 1)
    with pytest.raises(UserError, match="rows"):
        LtvModel(config=QUICK).fit(df, y[:-1])
    with pytest.raises(UserError, match="missing"):
        LtvModel(config=QUICK).fit(df, np.where(y > 0, np.nan, y))
    with pytest.raises(UserError, match="not fitted"):
        LtvModel().predict(df)

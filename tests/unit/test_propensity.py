"""The purchase-propensity model without a database: negative sampling, the model learning a planted signal on
synthetic interactions, save/load, cold users, the ranking metrics and rankers on hand-checked examples, the
baseline veto, the catalogue mapping for serving, and the retrain cutoffs and DAG chaining. The training run on
the real servers is in tests/integration/test_propensity.py."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ltvfeed.errors import UserError
from ltvfeed.frames.inputs import Catalogue
from ltvfeed.training.propensity.config import PropensityConfig
from ltvfeed.training.propensity.data import labelled_pairs, sample_negatives, sampling_weights
from ltvfeed.training.propensity.evaluate import (
    ItemScoreRanker,
    ScorerRanker,
    baselines,
    compare,
    hits_at_k,
    make_holdout,
    ndcg_at_k,
    recall_at_k,
    top_k,
)
from ltvfeed.training.propensity.synthetic import make_shop
from ltvfeed.training.propensity.train import check_dates

QUICK = PropensityConfig(max_epochs=15, patience=3, num_threads=1, ltv_model=None, seed=3)


# ------------------------------------------------------------------------------------------ negative sampling


def test_negative_sampling_never_draws_a_positive_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 12
    users = rng.integers(1, n_users, 400)
    items = rng.integers(0, n_items, 400)
    # user 0 bought every item but one: its negatives can only be that item
    users = np.concatenate([users, np.zeros(n_items - 1, dtype=np.int64)])
    items = np.concatenate([items, np.arange(1, n_items)])
    weights = sampling_weights(rng.poisson(5.0, n_items), power=0.5)
    neg_u, neg_i = sample_negatives(users, items, n_items, weights, per_positive=3, seed=7)
    positive_pairs = set(zip(users.tolist(), items.tolist(), strict=True))
    assert len(neg_u) == 3 * len(users)
    assert not any((u, i) in positive_pairs for u, i in zip(neg_u.tolist(), neg_i.tolist(), strict=True))
    assert set(neg_i[neg_u == 0].tolist()) == {0}
    again = sample_negatives(users, items, n_items, weights, per_positive=3, seed=7)
    assert np.array_equal(again[0], neg_u) and np.array_equal(again[1], neg_i)
    other = sample_negatives(users, items, n_items, weights, per_positive=3, seed=8)
    assert not np.array_equal(other[1], neg_i)


def test_negative_sampling_follows_popularity_and_drops_impossible_draws() -> None:
    weights = sampling_weights(np.array([0.0, 0.0, 99.0]), power=1.0)  # item 2 drawn 100x as often as 0 or 1
    neg_u, neg_i = sample_negatives(np.arange(3000), np.zeros(3000, dtype=np.int64), 3, weights, 1, seed=0)
    share = np.bincount(neg_i, minlength=3) / len(neg_i)
    assert share[0] == 0 and share[2] > 0.95
    # a user who bought everything gets no negatives instead of a positive one
    neg_u, neg_i = sample_negatives(np.zeros(3, dtype=np.int64), np.arange(3), 3, weights, 2, seed=0, max_rounds=5)
    assert len(neg_u) == 0
    with pytest.raises(UserError, match="weights"):
        sample_negatives(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), 3, np.zeros(3), 1, seed=0)


def test_labelled_pairs_leave_out_unknown_users_and_items() -> None:
    shop = make_shop(n_users=40, n_items=30, seed=2)
    bought = pd.concat(
        [shop.train_bought, pd.DataFrame({"user_id": ["nobody", "u00001"], "item_id": ["i0000", "no-such-item"]})]
    )
    pairs = labelled_pairs(shop.train, bought, 30, QUICK, seed=0)
    assert pairs.dropped == {"user_without_snapshot": 1, "item_without_snapshot": 1}
    assert pairs.n_positive == len(shop.train_bought)
    assert len(pairs.labels) == pairs.n_positive * (1 + QUICK.negatives_per_positive)


# ------------------------------------------------------------------------------------------------ the metrics


def test_ndcg_and_recall_by_hand() -> None:
    # user 0 bought items 3 and 7; ranking 3, 5, 7: hits at ranks 1 and 3
    # user 1 bought item 9, ranked 2nd; user 2 bought nothing (not averaged)
    scores = np.zeros((3, 10))
    scores[0, [3, 5, 7]] = [3, 2, 1]
    scores[1, [4, 9]] = [2, 1]
    top = top_k(scores, 3)
    assert top[0].tolist() == [3, 5, 7] and top[1].tolist() == [4, 9, 0]  # ties -> lower item first
    hits = hits_at_k(top, np.array([0, 0, 1]), np.array([3, 7, 9]))
    assert hits.tolist() == [[True, False, True], [False, True, False], [False, False, False]]
    n_relevant = np.array([2, 1, 0])
    user0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    user1 = (1 / math.log2(3)) / 1.0
    assert ndcg_at_k(hits, n_relevant) == pytest.approx((user0 + user1) / 2)
    assert recall_at_k(hits, n_relevant) == pytest.approx((2 / 2 + 1 / 1) / 2)
    # more relevant items than k: the ideal DCG counts only k of them; recall divides by all of them
    many = np.array([[True, True]])
    assert ndcg_at_k(many, np.array([5])) == pytest.approx(1.0)
    assert recall_at_k(many, np.array([5])) == pytest.approx(2 / 5)
    assert math.isnan(ndcg_at_k(hits[2:], n_relevant[2:]))


# ----------------------------------------------------------------------------------------- the model (unit)


@pytest.fixture(scope="module")
def shop():
    return make_shop(n_users=500, n_items=100, seed=5)


def test_feed_metrics_by_hand() -> None:
    from ltvfeed.training.propensity.evaluate import feed_metrics

    feeds = {"a": ["x", "y", "z"], "b": ["q", "x"], "c": ["x"], "d": []}
    bought = {"a": {"y": 5.0, "w": 1.0}, "b": {"x": 2.0}, "d": {"x": 1.0}, "e": {"x": 9.0}}
    got = feed_metrics(feeds, bought, k=2)
    # a: hit at rank 2 of 2 relevant; b: hit at rank 2 of 1; d: nothing served; c, e: no purchase / no feed
    d2 = 1 / math.log2(3)
    assert got["users"] == 3
    assert got["ndcg_at_2"] == pytest.approx((d2 / (1 + d2) + d2 + 0.0) / 3)
    assert got["recall_at_2"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert got["revenue_at_2"] == pytest.approx((5.0 + 2.0 + 0.0) / 3)


def test_buy_again_ranks_the_users_own_purchases_by_count_then_popularity() -> None:
    from ltvfeed.training.propensity.evaluate import BuyAgainRanker

    ranker = BuyAgainRanker(2, np.array([5.0, 1.0, 9.0, 0.0]), [0, 0, 1], [1, 3, 3], [2, 1, 1])
    block = ranker.block_scores(np.array([0, 1]))
    assert np.argsort(-block[0], kind="stable").tolist() == [1, 3, 2, 0]
    assert np.argsort(-block[1], kind="stable").tolist() == [3, 2, 0, 1]
    assert ranker.pair_scores(np.array([0, 1]), np.array([1, 1])).tolist() == pytest.approx([2 + 0.1, 0.1])


def test_served_ranker_adds_the_history_as_another_reason_to_buy() -> None:
    """The gate's model row is what the feed ranks by: 1 - (1 - P_model)(1 - P_history), on pairs and blocks."""
    from ltvfeed.training.propensity.evaluate import PairValues, ServedRanker

    class Scorer:  # two users x three items, logits 0 everywhere (P_model = 0.5)
        user_embeddings = np.zeros((2, 4), dtype=np.float32)
        item_embeddings = np.zeros((3, 4), dtype=np.float32)

        def __call__(self, u, i):
            return np.full(i.shape, 0.5)

    ranker = ServedRanker(Scorer(), PairValues(3, [0, 1], [2, 0], [0.8, 0.2]))
    block = ranker.block_scores(np.array([0, 1]))
    assert block.ravel().tolist() == pytest.approx([0.5, 0.5, 0.9, 0.6, 0.5, 0.5])
    pairs = ranker.pair_scores(np.array([0, 1, 1]), np.array([2, 2, 0]))
    assert pairs.tolist() == pytest.approx([0.9, 0.5, 0.6])


def _cold_start_tables():
    """Two users x four items: categories a, a, b and c (no affinity column for c)."""
    from ltvfeed.training.propensity.data import FeatureTables

    users = pd.DataFrame({"user_id": ["u0", "u1"], "affinity__a": [1.0, 0.0], "affinity__b": [3.0, 0.0]})
    items = pd.DataFrame(
        {
            "item_id": ["i0", "i1", "i2", "i3"],
            "category": ["a", "a", "b", "c"],
            "commercial_score": [0.9, 0.1, 0.5, 0.7],
            "popularity": [3.0, 1.0, 4.0, 2.0],
        }
    )
    return FeatureTables(date(2026, 1, 1), users, items, ("a", "b"))


def test_cold_start_ranker_is_the_category_affinity_p_with_the_history_by_hand() -> None:
    """P = the user's share of the item's category x the item's share of its category's popularity, then
    1 - (1 - P)(1 - P_history): u0's shares a 1/4, b 3/4; within a: 3/4 and 1/4, b: 1; c has no affinity."""
    from ltvfeed.training.propensity.evaluate import COLD_START, ColdStartRanker, PairValues

    tables = _cold_start_tables()
    history = PairValues(4, [0, 1], [0, 1], [0.2, 0.5])
    ranker = ColdStartRanker(tables, history)
    block = ranker.block_scores(np.array([0, 1]))
    u0 = [1 - (1 - 0.25 * 0.75) * (1 - 0.2), 0.25 * 0.25, 0.75 * 1.0, 0.0]
    np.testing.assert_allclose(block, [u0, [0.0, 0.5, 0.0, 0.0]])
    pairs = ranker.pair_scores(np.array([0, 0, 1]), np.array([0, 2, 1]))
    np.testing.assert_allclose(pairs, [u0[0], u0[2], 0.5])
    # generation weighs within a category by the catalogue's recent orders: passed in, they replace the tables'
    recent = ColdStartRanker(tables, history, popularity=np.array([1.0, 1.0, 4.0, 2.0]))
    np.testing.assert_allclose(recent.block_scores(np.array([0]))[0], [1 - 0.875 * 0.8, 0.125, 0.75, 0.0])
    # and the floor has it when the served history is given
    holdout = make_holdout(
        labelled_pairs(tables, pd.DataFrame({"user_id": ["u0"], "item_id": ["i2"]}), 30, QUICK, 0), 2, 10, 0
    )
    assert COLD_START not in baselines(holdout)
    assert isinstance(baselines(holdout, served_history=history)[COLD_START], ColdStartRanker)


def test_cold_start_ranker_uses_the_rule_generation_serves_with() -> None:
    """Same P as the cold-start source's, for the same users, items and category interest."""
    from ltvfeed.frames.inputs import UserBatch
    from ltvfeed.serving.propensity_sources import CategoryAffinitySource
    from ltvfeed.training.propensity.evaluate import ColdStartRanker, PairValues

    tables = _cold_start_tables()
    catalogue = Catalogue.from_frame(tables.items)
    affinity = pd.DataFrame({"user_id": ["u0", "u0"], "category": ["a", "b"], "affinity": [1.0, 3.0]})
    batch = UserBatch.from_frames(catalogue, ["u0", "u1"], category_affinity=affinity)
    source = CategoryAffinitySource()
    served = source.propensity(catalogue, batch)(source.index_users(batch.user_ids), np.tile(np.arange(4), (2, 1)))
    ours = ColdStartRanker(tables, PairValues(4, [], [], [])).block_scores(np.array([0, 1]))
    np.testing.assert_allclose(ours, served)


def test_baseline_veto_refuses_a_model_that_beats_the_simple_baselines_but_not_cold_start() -> None:
    """Promoting it would serve worse feeds than serving no model: the cold-start row is part of the floor."""
    from ltvfeed.training.propensity.evaluate import baseline_veto

    table = pd.DataFrame(
        {"ndcg_at_10": [0.30, 0.99, 0.15, 0.12, 0.25, 0.32]},
        index=["model", "two_tower", "popularity", "classic", "buy_again", "cold_start"],
    )
    veto = baseline_veto(table, "ndcg_at_10")
    assert veto is not None and "loses to the cold_start baseline" in veto and "0.3000 vs 0.3200" in veto
    assert baseline_veto(table.assign(ndcg_at_10=[0.33, 0.99, 0.15, 0.12, 0.25, 0.32]), "ndcg_at_10") is None
    assert baseline_veto(table.assign(ndcg_at_10=[0.32, 0.99, 0.15, 0.12, 0.25, 0.32]), "ndcg_at_10") is not None


@pytest.mark.parametrize(
    ("model", "refused_by"),
    [(0.30, None), (0.25, "buy_again"), (0.20, "buy_again"), (0.10, "buy_again")],
)
def test_baseline_veto_refuses_a_model_that_does_not_beat_every_baseline(model, refused_by) -> None:
    from ltvfeed.training.propensity.evaluate import baseline_veto

    table = pd.DataFrame(
        {"ndcg_at_10": [model, 0.15, 0.12, 0.25], "auc": [0.9, 0.6, 0.5, 0.7]},
        index=["model", "popularity", "classic", "buy_again"],
    )
    veto = baseline_veto(table, "ndcg_at_10")
    assert (veto is None) == (refused_by is None)
    # the two-tower alone is information, never a baseline the served model must beat
    assert (
        baseline_veto(
            pd.concat(
                [table, table.loc[["buy_again"]].rename(index={"buy_again": "two_tower"}).assign(ndcg_at_10=0.99)]
            ),
            "ndcg_at_10",
        )
        == veto
    )
    if refused_by:
        assert f"loses to the {refused_by} baseline" in veto and f"{model:.4f} vs 0.2500" in veto


@pytest.fixture(scope="module")
def trained(shop):
    from ltvfeed.training.propensity.fit import fit_network
    from ltvfeed.training.propensity.scorer import PropensityScorer

    pairs = labelled_pairs(shop.train, shop.train_bought, 30, QUICK, seed=QUICK.seed)
    network, report = fit_network(pairs, QUICK)
    scorer = PropensityScorer(network, shop.test.users, shop.test.items, {"note": "unit"})
    return network, report, scorer


def test_model_learns_the_planted_signal(shop, trained) -> None:
    _, report, scorer = trained
    assert report.n_validation > 0 and 1 <= report.best_epoch <= len(report.history)
    holdout = make_holdout(labelled_pairs(shop.test, shop.test_bought, 30, QUICK, seed=99), 10, 5000, 0)
    table = compare(holdout, {"model": ScorerRanker(scorer), **baselines(holdout)})
    model, popularity = table.loc["model"], table.loc["popularity"]
    assert model["auc"] > 0.7, table
    assert model["auc"] > popularity["auc"] + 0.05, table
    assert model["ndcg_at_10"] > popularity["ndcg_at_10"] * 1.2, table
    assert model["recall_at_10"] > popularity["recall_at_10"], table
    # the taste really is what it learnt: a user's top-10 leans to their favourite categories
    top = top_k(scorer.user_embeddings @ scorer.item_embeddings.T, 10)
    item_category = shop.test.items["category"].str[1:].astype(int).to_numpy()
    taste_of_top = np.take_along_axis(shop.taste, item_category[top], axis=1).mean()
    assert taste_of_top > 2 * shop.taste.mean()


def test_training_is_deterministic(shop, trained) -> None:
    from ltvfeed.training.propensity.fit import fit_network

    network, _, _ = trained
    pairs = labelled_pairs(shop.train, shop.train_bought, 30, QUICK, seed=QUICK.seed)
    again, _ = fit_network(pairs, QUICK)
    for (name, a), (_, b) in zip(network.state_dict().items(), again.state_dict().items(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), name


def test_scores_are_vectorised_probabilities_and_embeddings_are_the_logit(trained) -> None:
    _, _, scorer = trained
    rng = np.random.default_rng(0)
    users = rng.integers(0, len(scorer.user_ids), 7)
    items = rng.integers(0, len(scorer.item_ids), (7, 5))
    p = scorer(users, items)
    assert p.shape == (7, 5) and p.dtype == np.float64 and ((p >= 0) & (p <= 1)).all()
    logits = np.einsum("bd,bkd->bk", scorer.user_embeddings[users], scorer.item_embeddings[items])
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-5)
    ids = scorer.score_pairs(scorer.user_ids[users], scorer.item_ids[items[:, 0]])
    np.testing.assert_array_equal(ids, p[:, 0])
    with pytest.raises(UserError, match="item_idx"):
        scorer(users, items + len(scorer.item_ids))
    with pytest.raises(UserError, match="shapes"):
        scorer(users, items[:, 0])


def test_cold_users_and_unknown_items_get_finite_scores(trained) -> None:
    _, _, scorer = trained
    rows = scorer.user_index(["nobody-knows-me", scorer.user_ids[3]])
    assert rows.tolist() == [-1, 3]
    p = scorer(rows, np.array([[0, 1, -1], [0, 1, -1]]))
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    np.testing.assert_array_equal(scorer.user_vectors_for(["nobody-knows-me"])[0], scorer.unknown_user_embedding)
    # a user with side features but no trained id embedding (not seen in training) is scored from features
    new_user = scorer.users.iloc[[3]].assign(user_id="brand-new")
    extended = scorer.with_tables(pd.concat([scorer.users, new_user]), scorer.items)
    new_row = extended.user_index(["brand-new"])[0]
    assert new_row == len(scorer.user_ids)
    scores = extended(np.array([new_row]), np.arange(len(scorer.item_ids))[None, :])
    assert np.isfinite(scores).all() and scores.std() > 0  # features still rank the items


def test_save_load_round_trip_gives_identical_scores(trained, tmp_path: Path) -> None:
    from ltvfeed.training.propensity.scorer import PropensityScorer

    _, _, scorer = trained
    loaded = PropensityScorer.load(scorer.save(tmp_path / "scorer"))
    assert loaded.metadata == {"note": "unit"}
    assert np.array_equal(loaded.user_ids, scorer.user_ids) and np.array_equal(loaded.item_ids, scorer.item_ids)
    assert np.array_equal(loaded.user_embeddings, scorer.user_embeddings)
    assert np.array_equal(loaded.item_embeddings, scorer.item_embeddings)
    users = np.array([0, 5, -1, 17])
    items = np.tile(np.arange(len(scorer.item_ids)), (4, 1))
    assert np.array_equal(loaded(users, items), scorer(users, items))
    with pytest.raises(UserError, match="not a saved propensity scorer"):
        PropensityScorer.load(tmp_path)


def test_for_catalogue_maps_catalogue_rows_to_scorer_rows(trained) -> None:
    _, _, scorer = trained
    items = scorer.items
    # the catalogue in another order, with an item the scorer has never seen
    order = np.arange(len(items))[::-1]
    frame = pd.concat(
        [
            items.iloc[order][["item_id", "category", "commercial_score"]],
            pd.DataFrame({"item_id": ["brand-new"], "category": ["c1"], "commercial_score": [0.9]}),
        ]
    )
    catalogue = Catalogue.from_frame(frame)
    propensity = scorer.for_catalogue(catalogue)
    assert callable(propensity) and propensity.n_new_items == 1
    users = scorer.user_index([scorer.user_ids[2], "cold"])
    cat_rows = np.array([[0, 1, len(items)], [5, 0, len(items)]])  # len(items) = the new item's row
    got = propensity(users, cat_rows)
    want_known = scorer(users, scorer.item_index(catalogue.item_ids[cat_rows[:, :2]].ravel()).reshape(2, 2))
    np.testing.assert_array_equal(got[:, :2], want_known)
    assert np.isfinite(got[:, 2]).all()
    assert propensity.item_embeddings.shape == (catalogue.n_items, scorer.item_embeddings.shape[1])
    with pytest.raises(UserError, match="catalogue rows"):
        propensity(users, cat_rows + 1)


def test_config_and_split_dates_are_checked() -> None:
    with pytest.raises(UserError, match="negatives_per_positive"):
        PropensityConfig(negatives_per_positive=0)
    with pytest.raises(UserError, match="user_features"):
        PropensityConfig(user_features="csv")
    cfg = PropensityConfig(hidden=(32, 16), seed=4)
    assert PropensityConfig.from_params(cfg.params()) == cfg
    t1 = date(2024, 1, 1)
    assert check_dates(t1, t1 + timedelta(days=30), 30, t1 + timedelta(days=60)) is True
    assert check_dates(t1, t1 + timedelta(days=30), 30, t1 + timedelta(days=45)) is False
    with pytest.raises(UserError, match="at least 30 days after"):
        check_dates(t1, t1 + timedelta(days=29), 30, t1 + timedelta(days=90))
    with pytest.raises(UserError, match="end of the data"):
        check_dates(t1, t1 + timedelta(days=30), 30, t1 + timedelta(days=30))


def test_item_score_ranker_ranks_by_item_score() -> None:
    ranker = ItemScoreRanker(np.array([0.1, np.nan, 0.5]))
    assert ranker.block_scores(np.array([0, 1])).tolist() == [[0.1, 0.0, 0.5]] * 2
    assert ranker.pair_scores(np.array([0]), np.array([2])).tolist() == [0.5]


# ---- propensity_retrain: the DAG and its CLI twin ------------------------------------------------------------
def test_retrain_cutoffs_rule() -> None:
    from ltvfeed.orchestration.propensity_tasks import propensity_cutoffs

    assert propensity_cutoffs(date(2026, 6, 1), 30) == (date(2026, 4, 2), date(2026, 5, 2))
    with pytest.raises(UserError, match="horizon_days"):
        propensity_cutoffs(date(2026, 6, 1), 0)


def test_retrain_dags_are_chained_by_assets() -> None:
    """ltv_pipeline (marts) -> ltv_retrain (predictions) -> propensity_retrain (model) -> feed_generation."""
    import os

    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import AssetOrTimeSchedule

    from ltvfeed.orchestration.assets import LTV_PREDICTIONS_ASSET_URI, MARTS_ASSET_URI, PROPENSITY_MODEL_ASSET_URI
    from ltvfeed.settings import project_root

    dags = {}
    for name in ("ltv_retrain", "propensity_retrain", "feed_generation"):
        bag = DagBag(str(project_root() / "dags" / f"{name}.py"))
        assert bag.import_errors == {}
        dags[name] = bag.dags[name]
    prop = dags["propensity_retrain"]
    assert isinstance(prop.timetable, AssetOrTimeSchedule)
    assert list(prop.task_ids) == ["resolve_as_of", "prepare", "train_and_register", "promotion_gate"]
    assert prop.params["propensity_horizon_days"] == 30

    def outlets(dag, task_id):
        return {a.uri for a in dag.get_task(task_id).outlets}

    def triggers(condition) -> set[str]:  # an Asset, or AssetAny/AssetAll of them
        return {c.uri for c in getattr(condition, "objects", [condition])}

    assert outlets(dags["ltv_retrain"], "materialize_predictions") == {LTV_PREDICTIONS_ASSET_URI}
    assert outlets(prop, "promotion_gate") == {PROPENSITY_MODEL_ASSET_URI}
    assert triggers(prop.timetable.asset_condition) == {LTV_PREDICTIONS_ASSET_URI}
    feed_triggers = triggers(dags["feed_generation"].timetable.asset_condition)
    assert feed_triggers == {MARTS_ASSET_URI, PROPENSITY_MODEL_ASSET_URI}


# ------------------------------------------------------------------------------------------ history terms


def test_spend_history_is_each_category_share_of_spend_and_the_mean_log_price_paid() -> None:
    from ltvfeed.training.propensity.data import PRICE_PAID, spend_history

    spend = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "c"],
            "category": ["c0", "c1", "gone", "c1", "c0"],
            "spend": [30.0, 10.0, 5.0, 8.0, 0.0],
            "log_price_units": [2 * math.log(15.0), math.log(10.0), math.log(5.0), 0.0, 0.0],
            "priced_units": [2.0, 1.0, 1.0, 0.0, 0.0],
        }
    )
    out = spend_history(spend, ("c0", "c1")).set_index("user_id")
    # a category outside the model's vocabulary counts in the total only
    assert out.loc["a", "spend_share__c0"] == pytest.approx(30 / 45)
    assert out.loc["a", "spend_share__c1"] == pytest.approx(10 / 45)
    assert out.loc["a", PRICE_PAID] == pytest.approx((2 * math.log(15) + math.log(10) + math.log(5)) / 4)
    assert out.loc["b", "spend_share__c1"] == 1.0 and math.isnan(out.loc["b", PRICE_PAID])  # nothing priced
    assert out.loc["c"].drop(PRICE_PAID).tolist() == [0.0, 0.0]  # spent nothing: no share, not a division by 0
    assert list(spend_history(spend.iloc[:0], ("c0",)).columns) == ["user_id", "spend_share__c0", PRICE_PAID]


def test_history_terms_add_the_spend_share_and_the_price_distance_to_the_one_dot_product(shop) -> None:
    import torch

    from ltvfeed.training.features import FeatureEncoder
    from ltvfeed.training.propensity.data import PRICE_PAID
    from ltvfeed.training.propensity.model import PropensityNetwork

    users, items = shop.test.users.copy(), shop.test.items
    users.loc[users.index[:5], PRICE_PAID] = np.nan  # no priced purchase: no price term
    network = PropensityNetwork(
        FeatureEncoder.fit(users, exclude_columns=["user_id"]),
        FeatureEncoder.fit(items, categorical_columns=["category"], exclude_columns=["item_id"]),
        users["user_id"],
        items["item_id"],
        shop.test.categories,
        dim=4,
        history_terms=True,
    ).eval()
    without = network.user_table(users) @ network.item_table(items).T
    with torch.no_grad():
        network.history.copy_(torch.tensor([0.7, 0.3]))
    logits = network.user_table(users) @ network.item_table(items).T
    category = items["category"].str[1:].astype(int).to_numpy()
    share = users[[f"spend_share__c{c}" for c in range(len(shop.test.categories))]].to_numpy()[:, category]
    distance = (np.log(items["price"].to_numpy())[None, :] - users[PRICE_PAID].to_numpy()[:, None]) ** 2
    expected = 0.7 * share - 0.3 * np.nan_to_num(distance, nan=0.0)
    np.testing.assert_allclose(logits - without, expected, rtol=1e-4, atol=1e-3)
    assert network.vector_width == 4 + 2 + 3 * len(shop.test.categories) + 3


def test_the_fit_learns_the_spend_share_term_where_past_spend_reveals_the_taste(trained) -> None:
    network, _, _ = trained
    assert network.history_terms and float(network.history[0].detach()) > 0.05


def test_served_p_is_a_purchase_probability_in_the_horizon_not_the_training_designs(shop, trained) -> None:
    """Trained on buyers' purchases against 4 drawn items each, the network's P is about 12x the shop's purchase
    rate; the sampling offset brings the mean P over every user x item pair to the rate the test window shows."""
    network, _, scorer = trained
    users, items = len(scorer.user_ids), len(scorer.item_ids)
    p = scorer(np.arange(users), np.tile(np.arange(items), (users, 1)))
    rate = len(shop.test_bought) / (users * items)
    assert network.sampling_offset < -1.0
    assert 0.6 < p.mean() / rate < 1.5
    logit = np.log(p) - np.log1p(-p)
    in_training_design = 1.0 / (1.0 + np.exp(network.sampling_offset - logit))
    assert in_training_design.mean() / rate > 5.0

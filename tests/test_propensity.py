"""The purchase-propensity model.

Unit (no database): negative sampling, the model learning a planted signal on synthetic interactions, save/load,
cold users, the ranking metrics on hand-checked examples, the catalogue mapping for serving.

Integration: a tiny simulated shop goes through ingest and dbt for two cutoffs (one module-scoped setup), then
``train_propensity`` trains, evaluates out of time, logs to a fresh MLflow database and registers version 1 as
champion; ``load_propensity`` returns a scorer whose scores match the logged pyfunc model.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from ltvfeed.errors import UserError
from ltvfeed.serving.inputs import Catalogue
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
    from ltvfeed.serving.inputs import UserBatch
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


# ------------------------------------------------------------------------------------ integration: the stack

END = date(2026, 6, 1)  # the simulated data ends here (exclusive)
T1 = date(2026, 4, 2)  # training cutoff: purchases in [T1, T1 + 30d)
T2 = date(2026, 5, 2)  # evaluation cutoff: purchases in [T2, END)
HORIZON = 30


def insert_standin_ltv(dsn: str, snapshots: tuple[date, ...]) -> None:
    """What LTV batch scoring writes (model ltv, version 1), with simple stand-in predictions."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            """
            insert into marts.user_ltv_predictions (user_id, as_of, horizon_days, model_name, model_version,
                prob_return, expected_ltv, p10, p50, p90, feature_timestamp)
            select user_id, as_of, 90, 'ltv', '1', least(frequency / 3.0, 1.0), monetary_avg * frequency,
                0, 0, 0, feature_timestamp
            from marts.user_features where as_of = any(%s)
            """,
            (list(snapshots),),
        )


@pytest.fixture(scope="module")
def shop_stack(stack, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A tiny simulated shop in this module's own warehouse (dbt snapshots T1 and T2, Feast definitions
    applied, LTV predictions for both snapshots) and its own fresh MLflow database."""
    from ltvfeed.db import drop_database, ensure_database
    from ltvfeed.dbt_runner import build
    from ltvfeed.features import apply, clear_online
    from ltvfeed.ingest import import_directory
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory
    from ltvfeed.warehouse import ensure_warehouse

    suffix = uuid.uuid4().hex[:6]
    warehouse = f"ltvfeed_test_{run_id}_prop_{suffix}"
    mlflow_db = f"ltvfeed_test_{run_id}_prop_{suffix}_mlflow"
    tmp = tmp_path_factory.mktemp("propensity")
    dsn = ensure_warehouse(stack.pg_dsn, warehouse)
    ensure_database(stack.pg_dsn, mlflow_db)
    settings = stack.settings.model_copy(
        update={
            "warehouse_db": warehouse,
            "mlflow_db": mlflow_db,
            "redis_prefix": f"{stack.settings.redis_prefix}prop_{suffix}:",
            "state_dir": tmp / "state",
            "pg_dsn": stack.pg_dsn,  # what settings-taking tasks (begin_generation) start: these servers
            "redis_url": stack.redis_url,
        }
    )
    s = dataclasses.replace(stack, settings=settings)
    timings: dict[str, float] = {}
    try:
        start = time.perf_counter()
        # registry mechanics need a first champion: a shop where the served model clears the baseline floor
        # (500 users left 43 buyers to learn from: it tied with buy-again); the floor itself is tested below
        config = SimulationConfig(n_users=1500, n_items=60, days=150, seed=11, end_date=END, horizons=(HORIZON,))
        simulate_to_directory(config, tmp / "shop", progress=False)
        import_directory(dsn, tmp / "shop")
        timings["simulate + import"] = round(time.perf_counter() - start, 1)
        for as_of in (T1, T2):
            start = time.perf_counter()
            # every source Feast apply checks (user_recent_purchases: the API's freshness view)
            select = "+user_features +item_performance +user_recent_purchases"
            build(s, as_of, None, select, target_path=tmp / "dbt_target")
            timings[f"dbt build {as_of}"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        apply(s)
        timings["feast apply"] = round(time.perf_counter() - start, 1)
        insert_standin_ltv(dsn, (T1, T2))
        yield s
    finally:
        print("\npropensity shop timings (s):", timings)
        try:
            clear_online(s)
        finally:
            drop_database(stack.pg_dsn, warehouse)
            drop_database(stack.pg_dsn, mlflow_db)


INTEGRATION_CFG = PropensityConfig(max_epochs=20, patience=3, seed=1)
SERVED_MARGIN = 1.1  # how much better than the best baseline the first champion's served NDCG@10 must be


@pytest.fixture(scope="module")
def trained_v1(shop_stack):
    from ltvfeed.training.propensity import train_propensity

    start = time.perf_counter()
    result = train_propensity(shop_stack, T1, T2, HORIZON, INTEGRATION_CFG)
    print(f"\ntrain_propensity: {time.perf_counter() - start:.1f} s\n{result.metrics.to_string()}")
    return result


@pytest.fixture(scope="module")
def champion_v1(shop_stack, trained_v1):
    """Version 1 made champion by hand, past the floor that refused it (see the test below): the registry
    mechanics that follow need a champion, and a person may promote one that way."""
    from ltvfeed.training.registry import promote

    promote(shop_stack, "purchase_propensity", trained_v1.version, "test: champion by hand past the cold_start floor")
    return trained_v1


@pytest.mark.integration
def test_training_run_registers_the_first_version_and_the_cold_start_floor_refuses_it(shop_stack, trained_v1) -> None:
    """This shop's first version beats the simple baselines with a margin, but not what is served without a
    model (the cold-start row), so the floor refuses it although no champion exists. Before the cold-start row
    this test asserted it promoted; measured on this shop: served NDCG@10 0.384, cold_start 0.404, best simple
    baseline buy_again 0.315 (x1.22). The promoted path of the gate is tested on metric tables
    (test_baseline_veto_*) and by the registry's own tests (test_registry.py::test_first_version_becomes_champion);
    no training run on a test shop clears the cold-start row yet."""
    result = trained_v1
    assert result.version == "1" and not result.promoted, result.reason
    assert "loses to the cold_start baseline" in result.reason, result.reason
    assert result.eval_window_complete and result.holdout_id == f"purchases {T2.isoformat()} +{HORIZON}d"
    table = result.metrics
    assert list(table.index) == ["model", "two_tower", "popularity", "classic", "buy_again", "cold_start"]
    simple = table.loc[["popularity", "classic", "buy_again"], "ndcg_at_10"]
    # the simple floor held, by what is served, with a margin (issue 13: headline claims asserted with one); x1.1
    # leaves room for noise but not for a tie
    assert table.loc["model", "ndcg_at_10"] >= SERVED_MARGIN * simple.max(), table
    assert table.loc["cold_start", "ndcg_at_10"] > table.loc["model", "ndcg_at_10"], table
    assert list(table.columns) == ["auc", "ndcg_at_10", "recall_at_10"]
    assert np.isfinite(table.to_numpy()).all() and ((table >= 0) & (table <= 1)).all().all()
    # what the registry measured on the logged model is what the run measured on the trained one
    assert result.registry_metrics == pytest.approx(table.loc["model"].to_dict(), abs=1e-9)

    import mlflow

    from ltvfeed.infra.tracking import configure_mlflow

    client = configure_mlflow(shop_stack)
    run = client.get_run(result.run_id)
    assert run.data.params["cutoff"] == T1.isoformat() and run.data.params["eval_cutoff"] == T2.isoformat()
    assert "predictions for" in run.data.params["ltv_features"]  # the stand-in LTV scores were used
    logged = ("auc", "ndcg_at_10", "recall_at_10", "popularity.ndcg_at_10", "classic.auc", "cold_start.ndcg_at_10")
    for name in (*logged, "best_epoch"):
        assert name in run.data.metrics, name
    info = mlflow.models.get_model_info(result.model_uri)
    assert info.signature.inputs.input_names() == ["user_id", "item_id"]
    assert info.saved_input_example_info is not None


@pytest.mark.integration
def test_a_first_version_that_loses_to_a_baseline_is_never_champion(shop_stack) -> None:
    """Untrained (learning rate 0: random embeddings), in a registry of its own: strictly worse than the
    baselines, so refused although no champion exists."""
    from ltvfeed.db import drop_database, ensure_database
    from ltvfeed.training.propensity import train_propensity
    from ltvfeed.training.registry import current_champion

    mlflow_db = f"{shop_stack.settings.mlflow_db}_floor"
    ensure_database(shop_stack.pg_dsn, mlflow_db)
    s = dataclasses.replace(shop_stack, settings=shop_stack.settings.model_copy(update={"mlflow_db": mlflow_db}))
    try:
        untrained = dataclasses.replace(INTEGRATION_CFG, learning_rate=0.0, max_epochs=1)
        result = train_propensity(s, T1, T2, HORIZON, untrained)
        best = result.metrics.drop(index=["model", "two_tower"])["ndcg_at_10"].max()
        assert result.metrics.loc["model", "ndcg_at_10"] < best
        assert result.version == "1" and not result.promoted, result.reason
        assert "loses to the" in result.reason and "baseline" in result.reason
        assert current_champion(s, "purchase_propensity") is None
    finally:
        drop_database(shop_stack.pg_dsn, mlflow_db)


@pytest.mark.integration
def test_a_generation_records_the_ltv_version_its_propensity_model_reads(shop_stack, champion_v1) -> None:
    """Feed metadata names every model behind a feed: the propensity champion and the LTV scoring it reads
    (the champion served: no baseline fallback, which the next test covers)."""
    from ltvfeed.orchestration.feed_tasks import begin_generation, discard_if_uncommitted
    from ltvfeed.serving.generation import GenerationParams
    from ltvfeed.training.propensity.registry import ltv_model_read_by

    params = GenerationParams(as_of=T2, shards=1, baseline_fallback=False)
    assert ltv_model_read_by(shop_stack, champion_v1.version) == "ltv"
    plan = begin_generation(shop_stack.settings, params, origin="test")
    try:
        assert plan["model_versions"] == {"purchase_propensity": champion_v1.version, "ltv": "1"}
    finally:
        discard_if_uncommitted(shop_stack.settings, plan)
    with psycopg.connect(shop_stack.warehouse_dsn) as conn:  # a snapshot nobody scored: no LTV version to name
        conn.execute("delete from marts.user_ltv_predictions where as_of = %s", (T2,))
    try:
        plan = begin_generation(shop_stack.settings, params, origin="test")
        assert plan["model_versions"] == {"purchase_propensity": champion_v1.version}
        discard_if_uncommitted(shop_stack.settings, plan)
    finally:
        insert_standin_ltv(shop_stack.warehouse_dsn, (T2,))


@pytest.mark.integration
def test_a_champion_that_lost_to_cold_start_is_not_served(shop_stack, champion_v1) -> None:
    """The champion (by hand) lost to the cold-start row on its evaluation: a generation serves the cold-start
    source instead, for every user, and its metadata says so (the floor names the refused version)."""
    from ltvfeed.orchestration.feed_tasks import begin_generation, discard_if_uncommitted, feed_store
    from ltvfeed.serving.generation import GenerationParams
    from ltvfeed.serving.propensity_sources import CategoryAffinitySource

    plan = begin_generation(shop_stack.settings, GenerationParams(as_of=T2, shards=1), origin="test")
    try:
        assert plan["model_versions"] == CategoryAffinitySource().model_versions()
        assert plan["params"]["propensity_source"] == "category_affinity" and plan["params"]["fallback"] is None
        meta = feed_store(shop_stack).generation_meta(plan["generation"])
        floor = meta.extra["baseline_floor"]
        assert floor["fallback"] == "cold_start" and floor["version"] == champion_v1.version
        assert set(floor["baselines"]) == {"popularity", "classic", "buy_again", "cold_start"}
        assert floor["baselines"]["cold_start"] == pytest.approx(champion_v1.metrics.loc["cold_start", "ndcg_at_10"])
        assert meta.extra["propensity_source"] == "category_affinity"
    finally:
        discard_if_uncommitted(shop_stack.settings, plan)


@pytest.mark.integration
def test_loaded_champion_scores_like_the_logged_model(shop_stack, champion_v1) -> None:
    import mlflow

    from ltvfeed.training.propensity import load_propensity
    from ltvfeed.training.propensity.data import load_items

    scorer = load_propensity(shop_stack)
    assert scorer.version == "1" and scorer.tables_as_of == T2
    assert any(c.startswith("ltv_") for c in scorer.network.user_encoder.columns)
    with psycopg.connect(shop_stack.warehouse_dsn) as conn:
        n_users = conn.execute("select count(*) from marts.user_features where as_of = %s", (T2,)).fetchone()[0]
    assert len(scorer.user_ids) == n_users and scorer.user_embeddings.shape[0] == n_users

    logged = mlflow.pyfunc.load_model("models:/purchase_propensity@champion")
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame(
        {
            "user_id": [*rng.choice(scorer.user_ids, 20), "cold-user", scorer.user_ids[0]],
            "item_id": [*rng.choice(scorer.item_ids, 20), scorer.item_ids[0], "new-item"],
        }
    )
    want = np.asarray(logged.predict(pairs))
    got = scorer.score_pairs(pairs["user_id"], pairs["item_id"])
    assert np.array_equal(got, want)
    assert np.isfinite(got).all() and ((got > 0) & (got < 1)).all()

    # the serving side: catalogue rows and cold users
    catalogue = Catalogue.from_frame(load_items(shop_stack.warehouse_dsn, T2, 90))
    propensity = scorer.for_catalogue(catalogue)
    users = scorer.user_index([scorer.user_ids[1], "cold-user"])
    assert users.tolist() == [1, -1]
    p = propensity(users, np.tile(np.arange(catalogue.n_items), (2, 1)))
    assert p.shape == (2, catalogue.n_items) and np.isfinite(p).all()

    # the same model over another snapshot: T1's customers
    older = load_propensity(shop_stack, as_of=T1)
    with psycopg.connect(shop_stack.warehouse_dsn) as conn:
        n_t1 = conn.execute("select count(*) from marts.user_features where as_of = %s", (T1,)).fetchone()[0]
    assert older.version == "1" and older.tables_as_of == T1 and len(older.user_ids) == n_t1 < n_users

    with pytest.raises(UserError, match="purchase_propensity@nobody"):  # an alias no version holds
        load_propensity(shop_stack, alias="nobody")


@pytest.mark.integration
def test_cli_retrain_is_judged_against_the_champion(shop_stack, champion_v1, monkeypatch) -> None:
    """The same training again (user features read from the mart instead of Feast: the same values) gives the
    same metrics on the same holdout: no gain, so the new version stays challenger."""
    from typer.testing import CliRunner

    from ltvfeed.cli import app
    from ltvfeed.settings import get_settings
    from ltvfeed.training.registry import current_champion, list_versions

    for key, value in shop_stack.env().items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    new = str(
        1 + max(int(v.version) for v in list_versions(shop_stack, "purchase_propensity"))
    )  # tests run in any order
    try:
        args = ["propensity", "train", "--cutoff", T1.isoformat(), "--eval-cutoff", T2.isoformat()]
        args += ["--seed", "1", "--max-epochs", "20", "--user-features", "marts"]
        out = CliRunner().invoke(app, args)
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    assert "ndcg_at_10" in out.output and "popularity" in out.output and "classic" in out.output
    assert f"purchase_propensity v{new}: not promoted" in out.output, out.output
    assert current_champion(shop_stack, "purchase_propensity") == "1"
    versions = {v.version: v for v in list_versions(shop_stack, "purchase_propensity")}
    assert versions[new].aliases == ("challenger",) and versions[new].decision == "refused"
    assert versions[new].metrics == pytest.approx(versions["1"].metrics, abs=1e-9)

    bad = CliRunner().invoke(app, ["propensity", "train", "--cutoff", T1.isoformat(), "--eval-cutoff", "2026-04-20"])
    assert isinstance(bad.exception, UserError) and "at least 30 days after" in str(bad.exception)


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


@pytest.mark.integration
def test_propensity_retrain_dag_end_to_end(shop_stack, champion_v1) -> None:
    """One `airflow dags test propensity_retrain` run for END: cutoffs END - 60 d / END - 30 d (T1 / T2), a new
    registered version judged against the champion, and the model asset published with the run's as_of."""
    import json
    import sqlite3

    from ltvfeed.dbt_runner import parse
    from ltvfeed.orchestration.airflow_cli import test_dag
    from ltvfeed.orchestration.assets import PROPENSITY_MODEL_ASSET_URI
    from ltvfeed.training.registry import current_champion, list_versions

    parse(shop_stack.env())  # ltv_pipeline, in the same DAG folder, renders its dbt graph from the manifest
    before = {v.version for v in list_versions(shop_stack, "purchase_propensity")}
    champion = current_champion(shop_stack, "purchase_propensity")
    # learning rate 0: an untrained challenger, strictly worse than the baselines and the champion
    test_dag(shop_stack, "propensity_retrain", END, conf={"max_epochs": 2, "learning_rate": 0.0})
    versions = {v.version: v for v in list_versions(shop_stack, "purchase_propensity")}
    (new,) = set(versions) - before
    assert versions[new].decision == "refused"
    assert current_champion(shop_stack, "purchase_propensity") == champion
    assert current_champion(shop_stack, "purchase_propensity") is not None
    from ltvfeed.infra.tracking import configure_mlflow

    client = configure_mlflow(shop_stack)
    params = client.get_run(client.get_model_version("purchase_propensity", new).run_id).data.params
    assert (params["cutoff"], params["eval_cutoff"], params["horizon_days"]) == (T1.isoformat(), T2.isoformat(), "30")
    with sqlite3.connect(shop_stack.airflow_home / "airflow.db") as db:
        extras = db.execute(
            "select e.extra from asset_event e join asset a on a.id = e.asset_id where a.uri = ?",
            (PROPENSITY_MODEL_ASSET_URI,),
        ).fetchall()
    assert extras and json.loads(extras[-1][0]) == {"as_of": END.isoformat()}

"""Batch feed generation without servers: shard assignment, per-shard ranking (top-N, components, exclusions,
chunking, warm and cold users, fallbacks, variants), agreement with the pseudocode reference, parameters and the
DAG's forms. Against real PostgreSQL and Redis: tests/integration/test_generation.py."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

from ltvfeed.errors import UserError
from ltvfeed.frames.inputs import Catalogue, UserBatch
from ltvfeed.frames.propensity import CategoryAffinityPropensity
from ltvfeed.serving.config import ScoringWeights
from ltvfeed.serving.generation import GenerationParams, generate_feeds, rank_chunk, weights_from_mapping
from ltvfeed.serving.propensity_sources import CategoryAffinitySource, ScorerSource
from ltvfeed.serving.reference import ReferenceUser, generate_personalized_feed, reference_items
from ltvfeed.shards import check_shard, shard_of
from ltvfeed.warehouse.generation_reads import UserChunk

AS_OF = date(2026, 6, 1)  # on/after the DAG's start_date: `dags test` creates no tasks before it

# ---------------------------------------------------------------------------------------------- shards


def test_shard_assignment_is_a_stable_partition_of_the_users() -> None:
    users = [f"u{i:07d}" for i in range(5000)]
    for shards in (1, 3, 4, 7):
        assigned = shard_of(users, shards)
        assert assigned.min() >= 0 and assigned.max() < shards
        groups = [set(np.asarray(users)[assigned == s]) for s in range(shards)]
        assert sum(len(g) for g in groups) == len(users) and set().union(*groups) == set(users)  # once each
        # the hash spreads users evenly (5000 users: every shard within 15% of its share)
        assert all(abs(len(g) - len(users) / shards) < 0.15 * len(users) / shards for g in groups)
        # a user's shard depends on its id alone: not on order, batch or process
        reversed_ = shard_of(users[::-1], shards)[::-1]
        assert (reversed_ == assigned).all()
        assert (shard_of(users[:10], shards) == assigned[:10]).all()
    # the documented rule, computed independently: first 32 bits of md5(user_id) modulo shards
    for user in ("u1", "u0000042", "ü-ß"):
        assert shard_of([user], 4)[0] == int(hashlib.md5(user.encode()).hexdigest()[:8], 16) % 4


@pytest.mark.parametrize("shard, shards", [(4, 4), (-1, 4), (0, 0), (True, 2), (0, 5000)])
def test_invalid_shards_are_rejected(shard, shards) -> None:
    with pytest.raises(UserError, match="shard"):
        check_shard(shard, shards)


# ---------------------------------------------------------------------------------------------- parameters


def test_params_validate_and_round_trip() -> None:
    params = GenerationParams(as_of=AS_OF, n=5, weights=weights_from_mapping({"w_c": 0.3, "w_p": 0.7}), shards=3, k=50)
    assert params.weights == ScoringWeights(0.3, 0.7, ScoringWeights().diversity)  # w_d: the default's
    again = GenerationParams.from_dict(json.loads(json.dumps(params.to_dict())))  # the XCom trip
    assert again == params
    cfg = params.feed_config()
    assert (cfg.n, cfg.candidates.k, cfg.weights) == (5, 50, params.weights)
    for bad, fragment in [
        ({"n": 0}, "feed length"),
        ({"shards": 0}, "shards"),
        ({"k": 3, "n": 10}, "candidate count"),
        ({"propensity_source": "fake"}, "propensity source"),
        ({"chunk_users": 0}, "chunk_users"),
    ]:
        with pytest.raises(UserError, match=fragment):
            GenerationParams(as_of=AS_OF, **bad)
    with pytest.raises(UserError, match="unknown weight"):
        weights_from_mapping({"w_x": 1})


def test_weights_default_is_the_best_measured_and_the_concept_stays_selectable() -> None:
    """The default (docs/benchmarks.md, issue 14) and the concept's setting by name, alone or overridden, in the
    forms the CLI and the DAG pass; an unknown preset is refused."""
    assert ScoringWeights() == ScoringWeights(0.2, 0.8, 0.0)
    assert weights_from_mapping(None) == weights_from_mapping("default") == ScoringWeights()
    assert weights_from_mapping("concept") == ScoringWeights(0.5, 0.4, 0.1)
    assert weights_from_mapping({"preset": "concept", "w_d": 0}) == ScoringWeights(0.5, 0.4, 0.0)
    assert weights_from_mapping({"w_p": 0.5}) == ScoringWeights(0.2, 0.5, 0.0)
    assert weights_from_mapping("classic") == ScoringWeights.classic()
    round_trip = GenerationParams.from_dict(GenerationParams(as_of=AS_OF, weights=ScoringWeights.concept()).to_dict())
    assert round_trip.weights == ScoringWeights.concept()
    for bad in ("best", {"preset": "nope"}):
        with pytest.raises(UserError, match="unknown weight preset"):
            weights_from_mapping(bad)
    with pytest.raises(UserError, match="as_of"):
        GenerationParams.from_dict({"as_of": "yesterday"})


def test_as_of_comes_from_param_then_asset_event_then_logical_date() -> None:
    from ltvfeed.orchestration.tasks import run_as_of as resolve_generation_as_of

    run = SimpleNamespace(run_after=datetime(2026, 6, 3, 3, tzinfo=UTC))
    event = SimpleNamespace(extra={"as_of": "2026-06-02"})
    ctx: dict[str, Any] = {"params": {"as_of": None}, "logical_date": None, "dag_run": run}
    assert resolve_generation_as_of(ctx) == date(2026, 6, 3)
    ctx["triggering_asset_events"] = {"marts": [SimpleNamespace(extra={}), event]}
    assert resolve_generation_as_of(ctx) == date(2026, 6, 2)
    ctx["params"] = {"as_of": "2026-05-01"}
    assert resolve_generation_as_of(ctx) == date(2026, 5, 1)


# ---------------------------------------------------------------------------------------------- ranking a shard


def world(seed: int = 0, n_items: int = 60, n_users: int = 12):
    """A random catalogue and users with views, purchases and category affinity, as the warehouse delivers them."""
    rng = np.random.default_rng(seed)
    ids = [f"i{i:03d}" for i in range(n_items)]
    items = pd.DataFrame(
        {
            "item_id": ids,
            "category": rng.choice(["books", "food", "shoes", "toys"], n_items),
            "commercial_score": rng.random(n_items),
            "in_stock": rng.random(n_items) > 0.15,
            "is_repeat_purchase": rng.random(n_items) > 0.8,
        }
    )
    users = np.array([f"u{u:03d}" for u in range(n_users)], dtype=object)
    views = pd.DataFrame(
        [
            (u, ids[i], datetime(2024, 2, 1 + d, tzinfo=UTC))
            for u in users
            for d, i in enumerate(rng.choice(n_items, rng.integers(0, 6), replace=False))
        ],
        columns=["user_id", "item_id", "viewed_at"],
    )
    purchases = pd.DataFrame(
        [(u, ids[i]) for u in users for i in rng.choice(n_items, rng.integers(0, 8), replace=False)],
        columns=["user_id", "item_id"],
    )
    affinity = pd.DataFrame(
        [(u, c, float(rng.random())) for u in users for c in ("books", "food", "shoes", "toys") if rng.random() > 0.3],
        columns=["user_id", "category", "affinity"],
    )
    return items, UserChunk(users, views, purchases, affinity)


def split(chunk: UserChunk, size: int) -> Iterator[UserChunk]:
    for start in range(0, len(chunk), size):
        ids = chunk.user_ids[start : start + size]

        def keep(frame: pd.DataFrame, ids: np.ndarray = ids) -> pd.DataFrame:
            return frame[frame["user_id"].isin(ids)]

        yield UserChunk(ids, keep(chunk.views), keep(chunk.purchases), keep(chunk.category_affinity))


def params(**kw) -> GenerationParams:
    return GenerationParams(as_of=AS_OF, propensity_source="category_affinity", **kw)


def test_shard_feeds_are_top_n_with_components_and_exclusions() -> None:
    items, chunk = world()
    source = CategoryAffinitySource()
    catalogue = source.catalogue(items)
    p = params(n=8, k=40)
    feeds = {f.user_id: f for f in generate_feeds(catalogue, split(chunk, 5), p.feed_config(), source)}
    assert set(feeds) == set(chunk.user_ids)  # every user once
    in_stock = dict(zip(items["item_id"], items["in_stock"], strict=True))
    repeat = dict(zip(items["item_id"], items["is_repeat_purchase"], strict=True))
    w = p.weights
    for user, feed in feeds.items():
        ids = feed.item_ids
        assert len(ids) == 8 and len(set(ids)) == 8
        bought = set(chunk.purchases.loc[chunk.purchases["user_id"] == user, "item_id"])
        assert all(in_stock[i] for i in ids), "out-of-stock item recommended"
        assert not [i for i in ids if i in bought and not repeat[i]], "already bought item recommended"
        scores = [it.score for it in feed.items]
        assert scores == sorted(scores, reverse=True)
        for it in feed.items:
            assert it.purchase is not None and 0 <= it.purchase <= 1 and 0 <= it.diversity <= 1
            assert it.score == pytest.approx(w.commercial * it.commercial + w.purchase * it.purchase
                                             + w.diversity * it.diversity)  # fmt: skip


@pytest.mark.parametrize("fallback", ["buy_again", "popularity", "classic"])
def test_a_fallback_serves_users_with_history_the_baseline_feed(fallback) -> None:
    from ltvfeed.serving.baselines import buy_again_items, popular_now_items

    items, chunk = world(seed=3, n_users=12)
    source = CategoryAffinitySource()
    catalogue = source.catalogue(items)
    ranked = rank_chunk(catalogue, chunk, params(n=5, k=30).feed_config(), source)
    fell = rank_chunk(catalogue, chunk, params(n=5, k=30, fallback=fallback).feed_config(), source)
    batch = UserBatch.from_frames(catalogue, fell.user_ids, purchases=chunk.purchases)
    expected = {
        "buy_again": buy_again_items(batch, catalogue, 5),
        "popularity": np.broadcast_to(popular_now_items(catalogue, 5), (len(batch), 5)),
        "classic": np.broadcast_to(catalogue.popular(5), (len(batch), 5)),
    }[fallback]
    bought = set(chunk.purchases["user_id"])
    assert 0 < len(bought) < len(chunk)  # users with and without history
    same_order = [list(ranked.user_ids).index(u) for u in fell.user_ids]
    for r, user in enumerate(fell.user_ids):
        if user in bought:
            assert fell.items[r].tolist() == expected[r].tolist()
        else:
            assert fell.items[r].tolist() == ranked.items[same_order[r]].tolist()
    assert params(fallback=fallback).to_dict()["fallback"] == fallback  # recorded with the generation
    with pytest.raises(UserError, match="fallback"):
        params(fallback="random")


def test_chunking_does_not_change_any_feed() -> None:
    items, chunk = world(seed=1, n_users=23)
    source = CategoryAffinitySource()
    catalogue = source.catalogue(items)
    cfg = params(n=6, k=30).feed_config()
    whole = {f.user_id: f for f in generate_feeds(catalogue, [chunk], cfg, source)}
    seen = []
    pieces = {f.user_id: f for f in generate_feeds(catalogue, split(chunk, 4), cfg, source, on_chunk=seen.append)}
    assert seen == [4, 4, 4, 4, 4, 3]
    assert pieces == whole


def test_shard_ranking_agrees_with_the_pseudocode_reference() -> None:
    """With no diversity weight and K covering the catalogue, the chunked, vectorised generation ranks exactly as
    the literal per-item loop of the concept (same affinity model, same exclusions)."""
    items, chunk = world(seed=2, n_items=30, n_users=6)
    source = CategoryAffinitySource()
    catalogue = source.catalogue(items)
    cfg = params(n=10, k=30, weights=ScoringWeights(0.5, 0.5, 0.0)).feed_config()
    ranked = rank_chunk(catalogue, chunk, cfg, source)
    got = {f.user_id: f for f in ranked.to_feeds(catalogue)}
    affinity = np.zeros((len(chunk), catalogue.n_categories))
    rows = {u: r for r, u in enumerate(chunk.user_ids)}
    for u, c, a in chunk.category_affinity.itertuples(index=False):
        affinity[rows[u], catalogue.category_codes([c])[0]] += a
    model = CategoryAffinityPropensity(affinity, catalogue)
    ref_items = reference_items(
        items["item_id"], items["category"], items["commercial_score"], items["in_stock"], items["is_repeat_purchase"]
    )
    for user, row in rows.items():
        bought = frozenset(chunk.purchases.loc[chunk.purchases["user_id"] == user, "item_id"])
        want = generate_personalized_feed(
            ReferenceUser(user, row, (), bought), ref_items, cfg.weights, 10, model, cfg.diversity.category_weight
        )
        assert got[user].item_ids == want.item_ids
        assert [it.score for it in got[user].items] == pytest.approx([it.score for it in want.items])


class DotScorer:
    """A small model with the training side's contract (its own user/item vocabularies, -1 = cold user,
    embeddings): P = sigmoid(u . v) for known users; cold users are scored with the learnt ``unknown`` vector
    when ``cold_vector`` (and it is exposed as ``unknown_user_embedding``), else with the item's mean."""

    def __init__(self, users: list[str], items: list[str], dim: int = 4, seed: int = 0, cold_vector=False) -> None:
        rng = np.random.default_rng(seed)
        self.users = pd.Index(users)
        self.items = pd.Index(items)
        self.user_embeddings = rng.normal(size=(len(users), dim)).astype(np.float32)
        self.item_embeddings = rng.normal(size=(len(items), dim)).astype(np.float32)
        if cold_vector:
            self.unknown_user_embedding = rng.normal(size=dim).astype(np.float32)
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def user_index(self, ids) -> np.ndarray:
        return self.users.get_indexer(pd.Index(np.asarray(ids, dtype=object)))

    def item_index(self, ids) -> np.ndarray:
        return self.items.get_indexer(pd.Index(np.asarray(ids, dtype=object)))

    def __call__(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        self.calls.append((user_idx.copy(), item_idx.copy()))
        v = self.item_embeddings[item_idx]
        logits = np.einsum("bd,bkd->bk", self.user_embeddings[np.maximum(user_idx, 0)], v)
        if hasattr(self, "unknown_user_embedding"):
            cold = v @ self.unknown_user_embedding
        else:
            cold = (self.user_embeddings @ self.item_embeddings.T).mean(axis=0)[item_idx]
        return 1 / (1 + np.exp(-np.where(user_idx[:, None] >= 0, logits, cold)))


@pytest.mark.parametrize("cold_vector", [False, True])
def test_scorer_source_maps_vocabularies_and_ranks_warm_and_cold_users(cold_vector) -> None:
    items, chunk = world(seed=3, n_items=50, n_users=10)
    known_items = list(items["item_id"][5:])  # the model never saw the first 5 items (new in the catalogue)
    warm_users = list(chunk.user_ids[::2])  # nor the odd users (cold)
    # vocabularies in another order than the catalogue
    scorer = DotScorer(warm_users[::-1], known_items[::-1], cold_vector=cold_vector)
    source = ScorerSource(scorer, version="7")
    catalogue = source.catalogue(items)
    assert source.model_versions() == {"purchase_propensity": "7"}
    cfg = params(n=5, k=20, weights=ScoringWeights(0.0, 1.0, 0.0), purchase_scale="probability").feed_config()
    feeds = {f.user_id: f for f in rank_chunk(catalogue, chunk, cfg, source).to_feeds(catalogue)}
    assert set(feeds) == set(chunk.user_ids)
    for user, feed in feeds.items():
        assert len(feed.items) == 5
        for it in feed.items:  # each P is the model's, for this user and item, in the model's own vocabularies
            u, i = scorer.users.get_indexer([user])[0], scorer.items.get_indexer([it.item_id])[0]
            if i < 0:
                assert it.purchase == 0.0  # unknown to the model
                continue
            want = scorer(np.array([u]), np.array([[i]]))[0, 0]
            assert it.purchase == pytest.approx(want)
    # users with a vector (warm ones; cold ones too when the model has an unknown-user vector): embedding
    # retrieval makes their highest-P eligible item a candidate, so it tops a pure-P feed
    frame = items.set_index("item_id")
    bought = chunk.purchases.groupby("user_id")["item_id"].apply(set).to_dict()
    embedded = chunk.user_ids if cold_vector else warm_users
    for user in embedded:
        u = scorer.users.get_indexer([user])[0]
        eligible = [i for i in known_items if frame.loc[i, "in_stock"]
                    and (i not in bought.get(user, set()) or frame.loc[i, "is_repeat_purchase"])]  # fmt: skip
        p = scorer(np.array([u]), scorer.items.get_indexer(eligible)[None, :])[0]
        assert feeds[user].items[0].purchase == pytest.approx(p.max()), user
    # without a cold vector, cold users are ranked in their own sub-batch: scored with -1, never another's row
    if not cold_vector:
        cold_calls = [uidx for uidx, _ in scorer.calls if (uidx < 0).any()]
        assert cold_calls and all((uidx < 0).all() for uidx in cold_calls)


def test_classic_feed_comes_from_the_same_scorer() -> None:
    from ltvfeed.serving.generation import generation_classic_feed

    items, _ = world(seed=4)
    catalogue = Catalogue.from_frame(items)
    feed = generation_classic_feed(catalogue, params(n=5, k=20).feed_config())
    stocked = items[items["in_stock"]].sort_values(["commercial_score"], ascending=False)
    assert feed.item_ids == list(stocked["item_id"][:5])
    assert all(it.purchase is None for it in feed.items)


def test_a_variant_ranks_the_same_candidates_with_its_weights() -> None:
    """A variant's feeds are what the run's ranking gives with the variant's weights alone (same candidates and
    P(purchase), computed once), yielded as ``(name, feed)`` beside the main feeds."""
    items, chunk = world(seed=2, n_users=23)
    source = CategoryAffinitySource()
    catalogue = source.catalogue(items)
    cfg = params(n=6, k=30).feed_config()
    variants = {"concept": ScoringWeights.concept(), "cheap": ScoringWeights(1.0, 0.0, 0.0)}
    out = list(generate_feeds(catalogue, split(chunk, 7), cfg, source, variants=variants))
    main = {f.user_id: f for f in out if not isinstance(f, tuple)}
    assert main == {f.user_id: f for f in generate_feeds(catalogue, split(chunk, 7), cfg, source)}
    for name, weights in variants.items():
        got = {f.user_id: f for v, f in (o for o in out if isinstance(o, tuple)) if v == name}
        alone = generate_feeds(catalogue, split(chunk, 7), dataclasses.replace(cfg, weights=weights), source)
        assert got == {f.user_id: f for f in alone}
        assert any(got[u].item_ids != main[u].item_ids for u in main)  # the weights matter


def test_variants_from_the_cli_and_dag_forms() -> None:
    from ltvfeed.orchestration.feed_tasks import params_from_dag
    from ltvfeed.serving.generation import variants_from_mapping, variants_from_texts

    assert variants_from_texts(["concept=concept", "rev=0.6/0.4/0"]) == {
        "concept": ScoringWeights.concept(),
        "rev": ScoringWeights(0.6, 0.4, 0.0),
    }
    dag_form = {"concept": "concept", "rev": {"w_c": 0.6, "w_p": 0.4}}
    assert variants_from_mapping(dag_form) == variants_from_texts(["concept=concept", "rev=0.6/0.4/0"])
    p = params_from_dag({"variants": dag_form}, "2026-06-01")
    assert GenerationParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p  # the XCom trip
    assert params_from_dag({}, "2026-06-01").variants == {}
    for bad, fragment in [
        (["concept"], "NAME=PRESET"),
        (["a=1/2"], "commercial/purchase/diversity"),
        (["a=best"], "unknown weight preset"),
        (["Bad Name=concept"], "variant name"),
        (["a=concept", "a=default"], "twice"),
    ]:
        with pytest.raises(UserError, match=fragment):
            variants_from_texts(bad)
    with pytest.raises(UserError, match="variants must be a mapping"):
        variants_from_mapping(["concept"])


def test_feed_generation_dag_shape() -> None:
    import os

    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import AssetOrTimeSchedule
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from ltvfeed.settings import project_root

    bag = DagBag(str(project_root() / "dags" / "feed_generation.py"))
    assert bag.import_errors == {}
    dag = bag.dags["feed_generation"]
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert {"resolve_as_of", "begin", "shard_numbers", "generate_shard", "write_classic", "commit"} <= set(dag.task_ids)
    shard_task = dag.get_task("generate_shard")
    assert isinstance(shard_task, MappedOperator)  # dynamic task mapping: one task instance per shard
    assert dag.get_task("commit").upstream_task_ids == {"begin", "generate_shard", "write_classic"}
    assert dag.get_task("discard_uncommitted").trigger_rule == "one_failed"
    assert {k: dag.params[k] for k in ("n", "shards", "K", "propensity_source")} == {
        "n": 10,
        "shards": 4,
        "K": 200,
        "propensity_source": "registry",
    }
    assert weights_from_mapping(dag.params["weights"]) == ScoringWeights()  # the one default
    assert "concept 0.5/0.4/0.1" in dag.params.get_param("weights").description
    assert dag.params["variants"] == {}  # no variants unless asked for


def rows(dsn: str, query: str, *args: Any) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, args).fetchall()


def test_diversity_params_from_the_dag_form() -> None:
    from ltvfeed.orchestration.feed_tasks import params_from_dag

    params = params_from_dag({"diversity": {"view_weight": 0.2}, "purchase_scale": "probability"}, "2026-06-01")
    config = params.feed_config()
    assert (config.diversity.view_weight, config.diversity.category_weight) == (0.2, 0.5)
    assert config.purchase_scale == "probability"
    assert GenerationParams.from_dict(params.to_dict()) == params
    with pytest.raises(UserError, match="unknown diversity setting"):
        params_from_dag({"diversity": {"views": 0.2}}, "2026-06-01")

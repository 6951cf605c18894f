"""Benchmark of batch feed generation: users/s and peak memory of the chunked, vectorised generation path
(:func:`ltvfeed.serving.generation.generate_feeds`) against the concept's pseudocode (:mod:`ltvfeed.serving.reference`,
a Python loop over every item per user) measured in the same run on a small user sample; optionally, feed
quality (NDCG@10 / Recall@10) of the personalised vs the classic feed on a simulated shop.

    .venv/bin/python bench/bench_generation.py                      # 100k users x 10k items, plus 10k users
    .venv/bin/python bench/bench_generation.py --users 20000        # quicker
    .venv/bin/python bench/bench_generation.py --quality            # also the offline quality on a simulated shop

Speed, synthetic in-memory inputs: a catalogue of ``--items`` items (16 categories, 5% out of stock, 10% repeat
purchase), users with 0-20 recent views, 0-8 purchases and affinity for 1-5 categories, produced chunk by chunk
(never all at once; not timed). The propensity model is :class:`DotProductModel`, with the training side's
contract (own vocabularies, 32-d user/item embeddings, ``__call__(user_idx[B], item_idx[B, K])``): P = sigmoid(
u . v + item bias + user side features . w + item side features . w'), one vectorised call per scoring batch.
Timed: building each chunk's UserBatch from the long frames, candidates (embedding retrieval over the whole
catalogue, favourite categories, popular), P(purchase) on K=200 candidates, diversity-aware selection of N=10,
and the feeds' JSON (what would be written to Redis). Each size runs in a fresh process so that its peak RSS
(ru_maxrss) is its own. The reference runs the same model and data for ``--reference-users`` users.

Quality (``--quality``, needs the stack): a shop is simulated up to ``end``; the marts are built by dbt for
``as_of = end - 30 days`` and two earlier cutoffs on which the purchase-propensity model is trained and
evaluated (``ltvfeed.training.propensity.train_propensity``, so it never sees a purchase after ``as_of``); two
generations are made from the warehouse exactly as the DAG does (propensity from category affinity, then from
the champion) and they and the classic feed are scored against what each user actually bought in [as_of, end)
(binary relevance, users with a feed and >= 1 purchase there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

N_CATEGORIES = 16
DIM = 32
USER_SIDE = 8
ITEM_SIDE = 4


class DotProductModel:
    """A propensity model of realistic cost with the training side's contract (see module docstring)."""

    def __init__(self, n_users: int, n_items: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.users = pd.Index([f"u{i:07d}" for i in range(n_users)])
        self.items = pd.Index([f"i{i:06d}" for i in range(n_items)])
        self.user_embeddings = (rng.normal(size=(n_users, DIM)) / math.sqrt(DIM)).astype(np.float32)
        self.item_embeddings = (rng.normal(size=(n_items, DIM)) / math.sqrt(DIM)).astype(np.float32)
        self.item_bias = rng.normal(-2.0, 0.5, n_items).astype(np.float32)
        self.user_side = rng.normal(size=(n_users, USER_SIDE)).astype(np.float32)
        self.item_side = rng.normal(size=(n_items, ITEM_SIDE)).astype(np.float32)
        self.w_user = (rng.normal(size=USER_SIDE) * 0.1).astype(np.float32)
        self.w_item = (rng.normal(size=ITEM_SIDE) * 0.1).astype(np.float32)

    def user_index(self, ids) -> np.ndarray:
        return self.users.get_indexer(pd.Index(np.asarray(ids, dtype=object)))

    def item_index(self, ids) -> np.ndarray:
        return self.items.get_indexer(pd.Index(np.asarray(ids, dtype=object)))

    def __call__(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        user_idx = np.asarray(user_idx)
        u = self.user_embeddings[user_idx]  # [B, d]
        v = self.item_embeddings[item_idx]  # [B, K, d]
        logits = np.einsum("bd,bkd->bk", u, v) + self.item_bias[item_idx]
        logits += (self.user_side[user_idx] @ self.w_user)[:, None] + self.item_side[item_idx] @ self.w_item
        return 1.0 / (1.0 + np.exp(-logits))


def synthetic_items(n_items: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "item_id": [f"i{i:06d}" for i in range(n_items)],
            "category": [f"c{c:02d}" for c in rng.integers(0, N_CATEGORIES, n_items)],
            "commercial_score": rng.beta(0.7, 3.0, n_items),
            "in_stock": rng.random(n_items) > 0.05,
            "is_repeat_purchase": rng.random(n_items) < 0.10,
        }
    )


def synthetic_chunks(first_user: int, end_user: int, n_items: int, chunk_users: int, seed: int = 2) -> Iterator:
    """UserChunks of users ``first_user .. end_user - 1`` as the warehouse would deliver them, one at a time."""
    from ltvfeed.serving.generation_inputs import UserChunk

    rng = np.random.default_rng([seed, first_user])
    categories = np.array([f"c{c:02d}" for c in range(N_CATEGORIES)], dtype=object)
    item_ids = np.array([f"i{i:06d}" for i in range(n_items)], dtype=object)
    for start in range(first_user, end_user, chunk_users):
        ids = np.array([f"u{i:07d}" for i in range(start, min(end_user, start + chunk_users))], dtype=object)
        n_views = rng.integers(0, 21, len(ids))
        view_users = np.repeat(ids, n_views)
        views = pd.DataFrame(
            {
                "user_id": view_users,
                "item_id": item_ids[rng.integers(0, n_items, len(view_users))],
                "viewed_at": pd.Timestamp("2026-06-01", tz="UTC") - pd.to_timedelta(rng.random(len(view_users)), "D"),
            }
        )
        n_bought = rng.integers(0, 9, len(ids))
        buyers = np.repeat(ids, n_bought)
        purchases = pd.DataFrame({"user_id": buyers, "item_id": item_ids[rng.integers(0, n_items, len(buyers))]})
        n_liked = rng.integers(1, 6, len(ids))
        likers = np.repeat(ids, n_liked)
        affinity = pd.DataFrame(
            {
                "user_id": likers,
                "category": categories[rng.integers(0, N_CATEGORIES, len(likers))],
                "affinity": rng.random(len(likers)),
            }
        ).drop_duplicates(["user_id", "category"])
        yield UserChunk(ids, views, purchases, affinity)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(n_users: int, n_items: int, chunk_users: int, n: int, k: int, worker: int = 0, workers: int = 1) -> dict:
    """One worker's share (a contiguous 1/workers of the users, like one shard), in this process: users/s of
    the vectorised path, peak RSS. ``started``/``ended`` (epoch s) bound its generation for the parent."""
    from ltvfeed.serving.generation import GenerationParams, rank_chunk, single_threaded_math
    from ltvfeed.serving.propensity_sources import ScorerSource

    model = DotProductModel(n_users, n_items)
    source = ScorerSource(model, version="bench")
    catalogue = source.catalogue(synthetic_items(n_items))
    cfg = GenerationParams(as_of=date(2026, 6, 1), n=n, k=k, chunk_users=chunk_users).feed_config()
    first, end = n_users * worker // workers, n_users * (worker + 1) // workers
    rss_before = peak_rss_mib()
    ranked_s = json_s = 0.0
    users = items = 0
    started = time.time()
    with single_threaded_math():  # as feed_tasks.generate_shard does: one core per worker
        for chunk in synthetic_chunks(first, end, n_items, chunk_users):
            t0 = time.perf_counter()
            ranked = rank_chunk(catalogue, chunk, cfg, source)
            t1 = time.perf_counter()
            payloads = [f.with_generation("bench").to_json() for f in ranked.to_feeds(catalogue)]
            t2 = time.perf_counter()
            ranked_s += t1 - t0
            json_s += t2 - t1
            users += len(payloads)
            items += int((ranked.items >= 0).sum())
    ended = time.time()
    seconds = ranked_s + json_s
    return {
        "worker": worker,
        "workers": workers,
        "started": started,
        "ended": ended,
        "users": users,
        "items": n_items,
        "chunk_users": chunk_users,
        "seconds": round(seconds, 2),
        "rank_seconds": round(ranked_s, 2),
        "json_seconds": round(json_s, 2),
        "users_per_s": round(users / seconds, 1),
        "mean_feed_length": round(items / users, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_before_generation_mib": round(rss_before, 1),
    }


def measure_reference(n_users: int, n_items: int, sample: int, n: int) -> dict:
    """The pseudocode (loop over every item per user) on ``sample`` users of the same synthetic shop."""
    from ltvfeed.serving.config import ScoringWeights
    from ltvfeed.serving.reference import ReferenceUser, generate_personalized_feed, reference_items

    model = DotProductModel(n_users, n_items)
    frame = synthetic_items(n_items)
    ref_items = reference_items(
        frame["item_id"],
        frame["category"],
        frame["commercial_score"],
        frame["in_stock"],
        frame["is_repeat_purchase"],
        embeddings=model.item_embeddings,
    )
    chunk = next(synthetic_chunks(0, sample, n_items, sample))
    users = []
    for user in chunk.user_ids[:sample]:
        viewed = chunk.views[chunk.views["user_id"] == user].sort_values("viewed_at", ascending=False)
        bought = frozenset(chunk.purchases.loc[chunk.purchases["user_id"] == user, "item_id"])
        users.append(ReferenceUser(user, int(model.user_index([user])[0]), tuple(viewed["item_id"]), bought))
    started = time.perf_counter()
    for user in users:
        generate_personalized_feed(user, ref_items, ScoringWeights(), n, model)
    seconds = time.perf_counter() - started
    return {"users": len(users), "items": n_items, "seconds": round(seconds, 2), "users_per_s": len(users) / seconds}


def _children(argv: list[list[str]]) -> list[dict]:
    """Run benchmark children at the same time (one per worker), each a fresh process: its own peak RSS."""
    procs = [
        subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in argv
    ]
    results = []
    for args, proc in zip(argv, procs, strict=True):
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"benchmark child {args} failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _parallel_run(users: int, workers: int, common: list[str]) -> dict:
    """``workers`` processes on disjoint user ranges at once; throughput = all users / wall time of them all."""
    parts = _children(
        [["--child", "measure", "--users", str(users), "--worker", str(w), "--workers", str(workers), *common]
         for w in range(workers)]
    )  # fmt: skip
    wall = max(p["ended"] for p in parts) - min(p["started"] for p in parts)
    return {
        "users": sum(p["users"] for p in parts),
        "workers": workers,
        "wall_seconds": round(wall, 2),
        "users_per_s": round(sum(p["users"] for p in parts) / wall, 1),
        "peak_rss_mib_per_worker": max(p["peak_rss_mib"] for p in parts),
        "parts": parts,
    }


# ---------------------------------------------------------------------------------------------- quality


def _arm_scores(feeds: dict, bought: dict[str, dict[str, float]]) -> dict[str, float]:
    """NDCG@10 and Recall@10 of the feeds (user -> Feed or item ids) against what each user bought in the future
    window, and the revenue the feed holds: the user's future spend on the feed's top 10 items, averaged over the
    users evaluated (the one tested implementation: ``ltvfeed.training.propensity.evaluate.feed_metrics``)."""
    from ltvfeed.training.propensity.evaluate import feed_metrics

    lists = {u: (f.item_ids if hasattr(f, "item_ids") else list(f)) for u, f in feeds.items() if f is not None}
    m = feed_metrics(lists, bought, k=10)
    return {
        "ndcg@10": round(m["ndcg_at_10"], 4),
        "recall@10": round(m["recall_at_10"], 4),
        "revenue@10": round(m["revenue_at_10"], 2),
        "users": m["users"],
    }


def _baseline_arms(dsn: str, as_of: date, bought: dict[str, dict[str, float]]) -> dict[str, dict]:
    """ "Popular now" and "buy it again" (``ltvfeed.serving.baselines``) for the evaluated users."""
    from ltvfeed.serving.baselines import buy_again_items, popular_now_items
    from ltvfeed.serving.generation_inputs import WarehouseInputs
    from ltvfeed.serving.inputs import Catalogue, UserBatch

    users = sorted(bought)
    with WarehouseInputs(dsn, as_of) as wh:
        catalogue = Catalogue.from_frame(wh.catalogue_frame())
        chunk = wh.user_chunk(users)
    batch = UserBatch.from_frames(catalogue, chunk.user_ids, purchases=chunk.purchases)
    ids = catalogue.item_ids
    popular = [str(i) for i in ids[popular_now_items(catalogue, 10)]]
    again = buy_again_items(batch, catalogue, 10)
    return {
        "baseline: popular now (last 30 days)": _arm_scores({u: popular for u in users}, bought),
        "baseline: buy it again": _arm_scores(
            {u: [str(ids[i]) for i in row if i >= 0] for u, row in zip(batch.user_ids, again, strict=True)}, bought
        ),
    }


def quality(n_users: int, n_items: int, days: int, seed: int) -> dict:
    """Classic vs personalised feeds (cold-start category affinity, and the trained champion) against what the
    users of a simulated shop actually bought after ``as_of`` (see module docstring). Everything runs on the
    project's servers in a throwaway warehouse, MLflow database, state dir and Redis prefix."""
    import tempfile
    import uuid

    import psycopg

    from ltvfeed.cutoff import cutoff_instant as cutoff
    from ltvfeed.db import drop_database
    from ltvfeed.dbt_runner import run_dbt
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.feed_tasks import feed_store, run_generation
    from ltvfeed.serving.config import DiversityConfig, ScoringWeights
    from ltvfeed.serving.generation import GenerationParams
    from ltvfeed.settings import Settings
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory
    from ltvfeed.simulator.load import load_into_warehouse
    from ltvfeed.training.propensity import PropensityConfig, train_propensity

    end = date(2026, 6, 1)
    as_of = end - timedelta(days=30)
    c1, c2 = as_of - timedelta(days=60), as_of - timedelta(days=30)  # the model never sees [as_of, end)
    servers = up(Settings())
    tag = uuid.uuid4().hex[:6]
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            pg_dsn=servers.pg_dsn,
            redis_url=servers.redis_url,
            state_dir=Path(tmp) / "state",
            warehouse_db=f"ltvfeed_bench_gen_{tag}",
            mlflow_db=f"ltvfeed_bench_gen_{tag}_mlflow",
            redis_prefix=f"{servers.settings.redis_prefix}bench_gen_{tag}:",
        )
        stack = up(settings)
        try:
            t = time.perf_counter()
            shop_dir = Path(tmp) / "shop"
            simulate_to_directory(
                SimulationConfig(n_users=n_users, n_items=n_items, days=days, seed=seed, end_date=end),
                shop_dir,
                progress=False,
            )
            load_into_warehouse(stack.warehouse_dsn, shop_dir)
            timings["simulate_and_load_s"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            for snapshot in (c1, c2, as_of):
                run_dbt(
                    stack.env(),
                    ["run", "--select", "+user_features", "+item_performance", "+user_category_propensity",
                     "--vars", json.dumps({"as_of": snapshot.isoformat()})],
                    target_path=Path(tmp) / "target",
                )  # fmt: skip
            timings["dbt_3_snapshots_s"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            trained = train_propensity(stack, c1, c2, cfg=PropensityConfig(user_features="marts", ltv_model=None))
            timings["train_propensity_s"] = round(time.perf_counter() - t, 1)
            with psycopg.connect(stack.warehouse_dsn) as conn:
                future = conn.execute(
                    "select o.user_id, oi.item_id, sum(oi.quantity * oi.unit_price)::float8 from raw.orders o "
                    "join raw.order_items oi using (order_id) where o.ordered_at >= %s and o.ordered_at < %s "
                    "group by 1, 2",
                    (cutoff(as_of), cutoff(end)),
                ).fetchall()
            bought: dict[str, dict[str, float]] = {}
            for user, item, amount in future:
                bought.setdefault(user, {})[item] = amount
            store = feed_store(stack)
            arms: dict[str, dict] = {}
            default, pure, no_diversity = ScoringWeights(), ScoringWeights(0, 1, 0), ScoringWeights(0.5, 0.5, 0)
            mostly_p = ScoringWeights(0.2, 0.8, 0)
            sources = ["category_affinity"] + (["registry"] if trained.promoted else [])
            arms_to_run = [
                (source, weights, "user_max", DiversityConfig())
                for source in sources
                for weights in (default, ScoringWeights(0.3, 0.6, 0.1), mostly_p, no_diversity, pure)
            ]
            if trained.promoted:
                arms_to_run.append(("registry", default, "probability", DiversityConfig()))
            for source, weights, scale, diversity in arms_to_run:
                t = time.perf_counter()
                params = GenerationParams(
                    as_of=as_of,
                    shards=4,
                    weights=weights,
                    propensity_source=source,
                    purchase_scale=scale,
                    diversity=diversity,
                )
                result = run_generation(settings, params, progress=False)
                w = f"{weights.commercial:g}/{weights.purchase:g}/{weights.diversity:g}"
                w += "" if scale == "user_max" else " raw P"
                if diversity.view_weight != DiversityConfig().view_weight:
                    w += f" views x{diversity.view_weight:g}"
                timings[f"generation {source} {w} s"] = round(time.perf_counter() - t, 1)
                feeds = store.read_feeds(sorted(bought))
                arms[f"personalised, {source}, w={w}"] = _arm_scores(feeds, bought)
                if "classic" not in arms:  # the baselines, on the users who have a feed (like every arm)
                    served = {u: bought[u] for u in bought if feeds.get(u) is not None}
                    arms = {**_baseline_arms(stack.warehouse_dsn, as_of, served), **arms}
                    classic = store.read_classic()
                    arms["classic"] = _arm_scores({u: classic for u in feeds if feeds[u] is not None}, bought)
            return {
                "shop": {"users": n_users, "items": n_items, "days": days, "seed": seed},
                "as_of": as_of.isoformat(),
                "future_window": f"[{as_of}, {end})",
                "model": {
                    "version": trained.version,
                    "trained": f"{c1} -> eval {c2}",
                    "metrics": trained.registry_metrics,
                    "promoted": trained.promoted,
                    "reason": trained.reason,
                },
                "users_served": result["n_users"],
                "arms": arms,
                "timings": timings,
            }
        finally:
            import redis

            client = redis.Redis.from_url(stack.redis_url)
            keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            drop_database(stack.pg_dsn, settings.warehouse_db)
            drop_database(stack.pg_dsn, settings.mlflow_db)


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000, help="Users of the large run")
    parser.add_argument("--small-users", type=int, default=10_000, help="Users of the small run (memory growth)")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="Parallel shard workers of the headline run (cores)")
    parser.add_argument("--chunk-users", type=int, default=5000)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--reference-users", type=int, default=5, help="Users ranked by the pseudocode")
    parser.add_argument("--quality", action="store_true", help="Also measure NDCG/Recall on a simulated shop")
    parser.add_argument("--quality-only", action="store_true", help="Only the quality measurement")
    parser.add_argument("--quality-users", type=int, default=3000)
    parser.add_argument("--quality-items", type=int, default=300)
    parser.add_argument("--quality-days", type=int, default=240)
    parser.add_argument("--json", type=Path, help="Also write the results here")
    parser.add_argument("--child", choices=["measure", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    a = parser.parse_args()

    if a.child == "measure":
        print(json.dumps(measure(a.users, a.items, a.chunk_users, a.n, a.k, a.worker, a.workers)))
        return
    if a.child == "reference":
        print(json.dumps(measure_reference(a.users, a.items, a.reference_users, a.n)))
        return

    results: dict = {"cpu_cores": os.cpu_count(), "runs": []}
    if not a.quality_only:
        common = ["--items", str(a.items), "--chunk-users", str(a.chunk_users), "--n", str(a.n), "--k", str(a.k)]
        print(f"batch generation, {a.items:,} items, N={a.n}, K={a.k}, chunks of {a.chunk_users:,} users, "
              f"{os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f} at start)")  # fmt: skip
        for users, workers in sorted({(a.small_users, 1), (a.users, 1), (a.users, a.workers)}):
            run = _parallel_run(users, workers, common)
            results["runs"].append(run)
            one = run["parts"][0]
            print(
                f"  vectorised {run['users']:>8,} users, {workers} worker(s): {run['wall_seconds']:7.1f} s wall "
                f"{run['users_per_s']:8,.0f} users/s  (worker 0: rank {one['rank_seconds']:.1f} s, "
                f"JSON {one['json_seconds']:.1f} s)  peak RSS/worker {run['peak_rss_mib_per_worker']:,.0f} MiB"
            )
        ref = _children([["--child", "reference", "--users", str(a.users),
                          "--reference-users", str(a.reference_users), *common]])[0]  # fmt: skip
        results["reference"] = ref
        print(
            f"  reference  {ref['users']:>8,} users, 1 worker : {ref['seconds']:7.1f} s      "
            f"{ref['users_per_s']:8.3f} users/s  (pseudocode: Python loop over all {a.items:,} items per user)"
        )
        single = next(r for r in results["runs"] if r["users"] == a.users and r["workers"] == 1)
        best = next(r for r in results["runs"] if r["users"] == a.users and r["workers"] == a.workers)
        results["speedup_per_core"] = round(single["users_per_s"] / ref["users_per_s"], 1)
        results["speedup_all_cores"] = round(best["users_per_s"] / ref["users_per_s"], 1)
        print(f"  speed-up vs reference: {results['speedup_per_core']:,.0f}x on one core, "
              f"{results['speedup_all_cores']:,.0f}x with {a.workers} workers (target >= 100x); "
              f"{best['users_per_s']:,.0f} users/s with {a.workers} workers (target >= 2,000)")  # fmt: skip
        small = next(r for r in results["runs"] if r["users"] == a.small_users and r["workers"] == 1)
        growth = single["peak_rss_mib_per_worker"] / small["peak_rss_mib_per_worker"]
        results["rss_growth"] = round(growth, 2)
        print(
            f"  peak RSS, one worker, {small['users']:,} -> {single['users']:,} users "
            f"({single['users'] / small['users']:.0f}x): {small['peak_rss_mib_per_worker']:,.0f} -> "
            f"{single['peak_rss_mib_per_worker']:,.0f} MiB ({growth:.2f}x)"
        )
    if a.quality or a.quality_only:
        q = quality(a.quality_users, a.quality_items, a.quality_days, seed=7)
        results["quality"] = q
        print(
            f"quality on a simulated shop ({q['shop']}), as_of {q['as_of']}, future purchases {q['future_window']}, "
            f"champion v{q['model']['version']} trained {q['model']['trained']}:"
        )
        for arm, m in q["arms"].items():
            print(
                f"  {arm:56} NDCG@10 {m['ndcg@10']:.4f}  Recall@10 {m['recall@10']:.4f}  "
                f"revenue@10 {m['revenue@10']:8.2f}  ({m['users']} users)"
            )
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

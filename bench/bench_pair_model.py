"""A learned pair model against the served cold-start rule (issue 14's open item), judged out of time by the
propensity gate's own comparison on a simulated shop.

    .venv/bin/python bench/bench_pair_model.py                 # the synthetic shop of bench_generation --quality-only
    .venv/bin/python bench/bench_pair_model.py --users 10000    # a larger shop

What is served without a trained champion is a fixed rule: P = the user's category affinity x the item's share of
its category's recent orders, combined with the user's own P(bought again) (``ColdStartRanker``). Issue 14 asks
for the propensity model to read the user's history as pair features: times bought, days since last bought
against the user's cycle, the share of the user's spend in the item's category, the item's price relative to
what the user pays. This bench fits a logistic regression over those and the rule's own terms, one row per
(buyer, item) of the whole item table at a cutoff, labelled by purchases in the next ``--horizon-days``, then
ranks the next cutoff's holdout with it beside every floor row of the gate (``evaluate.compare``: popularity,
classic, buy_again, cold_start). Two folds: fit at as_of - 60 judge at as_of - 30, fit at as_of - 30 judge at
as_of; the model fitted one fold earlier is judged at as_of too (``pair, fitted a fold earlier``).

Pair features (one column each, standardised on the fitting rows): logit of the served rule's P, log of the
cold-start P, log of P(bought again), bought before (0/1), log(1 + times bought), log(days since last bought),
share of the user's spend in the item's category (times x price), log(item price / the user's mean paid price)
and its absolute value, log(1 + recent orders of the item), commercial score. Nothing is served from here:
it measures whether such a model beats the rule out of time before anything ships.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from scratch_stack import add_shop_arguments, load_simulated_shop, scratch_stack

FEATURES = (
    "logit served P",
    "log cold-start P",
    "log P(bought again)",
    "bought before",
    "log1p times",
    "log days since last",
    "category share of spend",
    "log price / paid",
    "abs log price / paid",
    "log1p recent orders",
    "commercial score",
)


class PairFeatures:
    """The features above for any users x the whole item table at one cutoff, from the gate's own reads."""

    def __init__(self, stack, as_of: date, horizon_days: int, cfg, categories=None) -> None:
        from ltvfeed.training.propensity.data import load_tables, served_history
        from ltvfeed.training.propensity.evaluate import ColdStartRanker, PairValues
        from ltvfeed.warehouse.generation_reads import WarehouseInputs

        self.tables = t = load_tables(stack, as_of, cfg, categories=categories)
        n_users, n_items = len(t.users), len(t.items)
        self.read = served_history(stack.warehouse_dsn, t, np.arange(n_users), horizon_days)
        self.again = PairValues(n_items, self.read.user_rows, self.read.item_rows, self.read.probability)
        self.cold = ColdStartRanker(t, self.again, self.read.recent_popularity)
        with WarehouseInputs(stack.warehouse_dsn, as_of, max_recent_views=0, non_merchandise=()) as warehouse:
            bought = warehouse.user_chunk(t.users["user_id"].astype(str).to_numpy()).purchases
        u = t.user_index.get_indexer(bought["user_id"].astype(str))
        i = t.item_index.get_indexer(bought["item_id"].astype(str))
        ok = (u >= 0) & (i >= 0)
        u, i, bought = u[ok], i[ok], bought[ok]
        times = bought["times"].to_numpy(np.float64)
        self.times = PairValues(n_items, u, i, times)
        self.last = PairValues(n_items, u, i, bought["last_days"].to_numpy(np.float64) + 1.0)
        price = t.items["price"].to_numpy(np.float64)
        self.price = np.where(np.isfinite(price) & (price > 0), price, np.nanmedian(price[price > 0]))
        self.category = pd.factorize(t.items["category"])[0]
        spend = np.zeros((n_users, self.category.max() + 1))
        np.add.at(spend, (u, self.category[i]), times * self.price[i])
        total = spend.sum(axis=1, keepdims=True)
        self.share = np.divide(spend, total, out=np.zeros_like(spend), where=total > 0)
        count, log_paid = np.zeros(n_users), np.zeros(n_users)
        np.add.at(count, u, times)
        np.add.at(log_paid, u, times * np.log(self.price[i]))
        self.has_history = count > 0
        self.mean_log_paid = np.divide(log_paid, count, out=np.zeros(n_users), where=count > 0)
        self.recent = np.log1p(self.read.recent_popularity)
        self.commercial = t.items["commercial_score"].fillna(0.0).to_numpy(np.float64)

    def block(self, user_rows: np.ndarray) -> np.ndarray:
        """[len(user_rows), n_items, len(FEATURES)]."""
        n_items = len(self.tables.items)
        shape = (len(user_rows), n_items)
        cold = self.cold.propensity(user_rows, np.broadcast_to(np.arange(n_items), shape))
        again = self.again.block(user_rows)
        served = 1.0 - (1.0 - cold) * (1.0 - again)
        times = self.times.block(user_rows)
        relative = np.where(
            self.has_history[user_rows, None], np.log(self.price)[None, :] - self.mean_log_paid[user_rows, None], 0.0
        )
        columns = (
            np.log(served + 1e-9) - np.log1p(1e-9 - served),
            np.log(cold + 1e-6),
            np.log(again + 1e-4),
            (times > 0).astype(np.float64),
            np.log1p(times),
            np.log(np.maximum(self.last.block(user_rows), 1.0)),
            self.share[user_rows][:, self.category],
            relative,
            np.abs(relative),
            np.broadcast_to(self.recent, shape),
            np.broadcast_to(self.commercial, shape),
        )
        return np.stack(columns, axis=-1)


class PairModel:
    """Logistic regression on standardised features, L2 on the weights (scipy L-BFGS)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, l2: float = 1.0) -> None:
        from scipy.optimize import minimize

        self.mean, self.std = features.mean(axis=0), features.std(axis=0) + 1e-9
        z = np.column_stack([np.ones(len(features)), (features - self.mean) / self.std])

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            logit = z @ w
            grad = z.T @ (1.0 / (1.0 + np.exp(-logit)) - labels)
            grad[1:] += l2 * w[1:]
            return float(np.sum(np.logaddexp(0.0, logit) - labels * logit) + 0.5 * l2 * w[1:] @ w[1:]), grad

        self.weights = minimize(loss, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B").x

    def logit(self, features: np.ndarray) -> np.ndarray:
        return self.weights[0] + ((features - self.mean) / self.std) @ self.weights[1:]


class PairRanker:
    """The gate's Ranker protocol over one cutoff's features."""

    def __init__(self, features: PairFeatures, model: PairModel) -> None:
        self.features, self.model = features, model

    def block_scores(self, user_rows: np.ndarray) -> np.ndarray:
        return self.model.logit(self.features.block(np.asarray(user_rows)))

    def pair_scores(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        user_rows, item_rows = np.asarray(user_rows), np.asarray(item_rows)
        out = np.empty(len(user_rows))
        for start in range(0, len(user_rows), 1000):
            rows = slice(start, start + 1000)
            scores = self.block_scores(user_rows[rows])
            out[rows] = scores[np.arange(len(scores)), item_rows[rows]]
        return out


def fit(stack, features: PairFeatures, horizon_days: int, max_pairs: int, seed: int) -> tuple[PairModel, int]:
    """Buyers of the window after the cutoff (a seeded sample of at most ``max_pairs`` / items) x every item."""
    from ltvfeed.training.propensity.data import positive_rows
    from ltvfeed.warehouse.propensity_reads import purchases

    tables = features.tables
    n_items = len(tables.items)
    bought = purchases(stack.warehouse_dsn, tables.as_of, tables.as_of + timedelta(days=horizon_days))
    buyers_rows, items_rows, _ = positive_rows(tables, bought)  # no negatives: every item of a buyer is a row
    buyers = np.unique(buyers_rows)
    take = min(len(buyers), max(1, max_pairs // n_items))
    users = np.sort(np.random.default_rng(seed).choice(buyers, take, replace=False))
    labels = np.zeros((len(users), n_items))
    kept = np.isin(buyers_rows, users)
    labels[np.searchsorted(users, buyers_rows[kept]), items_rows[kept]] = 1.0
    return PairModel(features.block(users).reshape(-1, len(FEATURES)), labels.reshape(-1)), int(labels.sum())


def judge(stack, features: PairFeatures, horizon_days: int, cfg, models: dict[str, PairModel]) -> pd.DataFrame:
    """The gate's table at ``features``' cutoff: each model beside every floor row."""
    from ltvfeed.training.propensity.data import window_pairs
    from ltvfeed.training.propensity.evaluate import baselines, compare, make_holdout
    from ltvfeed.warehouse.propensity_reads import purchase_counts

    as_of = features.tables.as_of
    holdout = make_holdout(window_pairs(stack, features.tables, horizon_days, cfg, seed=1), 10, 5000, 0)
    history = purchase_counts(stack.warehouse_dsn, as_of - timedelta(days=cfg.popularity_days), as_of)
    floor = baselines(holdout, history, features.again, features.read.recent_popularity)
    rankers = {name: PairRanker(features, model) for name, model in models.items()}
    return compare(holdout, {**rankers, **floor})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shop_arguments(parser)
    parser.add_argument("--horizon-days", type=int, default=30)
    parser.add_argument("--max-pairs", type=int, default=3_000_000, help="fitting rows (buyers x items) at most")
    args = parser.parse_args()

    from ltvfeed.training.propensity import PropensityConfig

    end = date(2026, 6, 1)
    as_of = end - timedelta(days=args.horizon_days)
    cutoffs = [as_of - timedelta(days=k * args.horizon_days) for k in (2, 1, 0)]
    cfg = PropensityConfig(user_features="marts", ltv_model=None)
    with scratch_stack("pair") as (stack, tmp):
        load_simulated_shop(stack, Path(tmp), args, end, cutoffs)
        first = PairFeatures(stack, cutoffs[0], args.horizon_days, cfg)
        at = [first] + [PairFeatures(stack, c, args.horizon_days, cfg, first.tables.categories) for c in cutoffs[1:]]
        models = []
        for k, features in enumerate(at[:2]):
            model, positives = fit(stack, features, args.horizon_days, args.max_pairs, seed=k)
            models.append(model)
            weights = {name: round(float(w), 3) for name, w in zip(FEATURES, model.weights[1:], strict=True)}
            print(f"fitted at {features.tables.as_of}: {positives} bought pairs; weights {weights}")
        pd.set_option("display.width", 200)
        for k, features in enumerate(at[1:]):
            named = {"pair": models[k]}
            if k == 1:
                named["pair, fitted a fold earlier"] = models[0]
            table = judge(stack, features, args.horizon_days, cfg, named)
            print(f"\njudged at {features.tables.as_of} (purchases of the next {args.horizon_days} days):")
            print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

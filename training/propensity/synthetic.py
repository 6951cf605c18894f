"""Synthetic interactions with a planted signal, for tests and benchmarks without a warehouse.

Every user has a hidden taste over categories (Dirichlet: focused); the history before a cutoff reveals it
noisily (the ``affinity__<category>`` columns, as the propensity mart would, and the ``spend_share__<category>``
columns, as past orders would); purchases in the window pick a category by taste, then an item within it by the
item's appeal. Popularity (orders in the look-back) follows appeal across all users, so a popularity ranking is
decent and a model that reads the affinities can beat it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from ltvfeed.training.propensity.data import (
    POPULARITY,
    PRICE_PAID,
    FeatureTables,
    affinity_columns,
    spend_share_columns,
)


@dataclass(frozen=True)
class SyntheticShop:
    train: FeatureTables
    train_bought: pd.DataFrame  # user_id, item_id bought in the training window
    test: FeatureTables
    test_bought: pd.DataFrame
    taste: np.ndarray  # [users, categories] hidden truth


def _bought(rng, user_ids, taste, item_category, appeal, per_user: float) -> pd.DataFrame:
    rows = []
    n_cat = taste.shape[1]
    by_category = [np.flatnonzero(item_category == c) for c in range(n_cat)]
    for u, uid in enumerate(user_ids):
        for _ in range(rng.poisson(per_user)):
            c = rng.choice(n_cat, p=taste[u])
            pool = by_category[c]
            if len(pool):
                p = appeal[pool] / appeal[pool].sum()
                rows.append((uid, f"i{rng.choice(pool, p=p):04d}"))
    return pd.DataFrame(rows, columns=["user_id", "item_id"]).drop_duplicates().sort_values(["user_id", "item_id"])


def _tables(rng, as_of, user_ids, taste, items, appeal, history_events: float) -> FeatureTables:
    n_users, n_cat = taste.shape
    categories = tuple(f"c{c}" for c in range(n_cat))
    events = 1 + rng.poisson(history_events, size=n_users)
    counts = np.stack([rng.multinomial(m, p) for m, p in zip(events, taste, strict=True)])
    affinity = counts / counts.sum(axis=1, keepdims=True)
    users = pd.DataFrame(
        {
            "user_id": user_ids,
            "frequency": rng.poisson(2.0, size=n_users),
            "recency_days": rng.integers(1, 200, size=n_users),
            "country": rng.choice(["DE", "FR", "NL"], size=n_users),
        }
    )
    users[affinity_columns(categories)] = affinity
    # what the user's past orders spent per category: another noisy reveal of the taste (the history terms)
    orders = np.stack([rng.multinomial(m, p) for m, p in zip(1 + rng.poisson(3.0, n_users), taste, strict=True)])
    users[spend_share_columns(categories)] = orders / orders.sum(axis=1, keepdims=True)
    users[PRICE_PAID] = rng.normal(3.0, 0.3, n_users)
    items = items.copy()
    items[POPULARITY] = rng.poisson(appeal * 20.0).astype(np.float64)
    rank = items[POPULARITY].rank(pct=True)
    items["commercial_score"] = (0.7 * rank + 0.3 * rng.random(len(items))).clip(0, 1)
    items["conversions_30d"] = rng.poisson(appeal * 6.0)
    return FeatureTables(as_of, users, items, categories)


def make_shop(
    n_users: int = 600, n_items: int = 120, n_categories: int = 6, seed: int = 0, per_user: float = 1.5
) -> SyntheticShop:
    rng = np.random.default_rng(seed)
    taste = rng.dirichlet(np.full(n_categories, 0.3), size=n_users)
    user_ids = np.array([f"u{u:05d}" for u in range(n_users)], dtype=object)
    item_category = rng.integers(0, n_categories, size=n_items)
    appeal = rng.lognormal(0.0, 1.0, size=n_items)
    items = pd.DataFrame(
        {
            "item_id": [f"i{i:04d}" for i in range(n_items)],
            "category": [f"c{c}" for c in item_category],
            "price": np.round(rng.lognormal(3.0, 0.6, size=n_items), 2),
        }
    )
    t1, t2 = date(2024, 1, 1), date(2024, 2, 1)
    train = _tables(rng, t1, user_ids, taste, items, appeal, history_events=6.0)
    train_bought = _bought(rng, user_ids, taste, item_category, appeal, per_user)
    test = _tables(rng, t2, user_ids, taste, items, appeal, history_events=8.0)
    test_bought = _bought(rng, user_ids, taste, item_category, appeal, per_user)
    return SyntheticShop(train, train_bought, test, test_bought, taste)

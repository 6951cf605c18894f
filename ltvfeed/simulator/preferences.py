"""Explicit preferences: wishlisted and saved items (drawn from the user's taste, so they say something about
future purchases) and favourite categories stated in the profile (the user's strongest tastes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltvfeed.simulator.catalog import Catalog
from ltvfeed.simulator.columns import SECONDS_PER_DAY
from ltvfeed.simulator.config import SimulationConfig
from ltvfeed.simulator.population import Population, sample_categories

PREFERENCE_KINDS = ("wishlist", "saved", "profile_category")
WISHLIST, SAVED, PROFILE_CATEGORY = range(len(PREFERENCE_KINDS))
MAX_PROFILE_CATEGORIES = 3


@dataclass(frozen=True)
class Preferences:
    user: np.ndarray
    kind: np.ndarray
    item: np.ndarray  # -1 = none (profile_category)
    category: np.ndarray  # -1 = none (wishlist, saved)
    second: np.ndarray


def _item_preferences(
    kind: int,
    per_day: float,
    catalog: Catalog,
    pop: Population,
    span: np.ndarray,
    begin: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    count = rng.poisson(per_day * span * (0.5 + pop.views_mean / 5.0))
    user = np.repeat(np.arange(pop.n), count)
    item = catalog.sample_items(sample_categories(pop.taste, user, rng), pop.price_bin[user], rng)
    second = np.floor((begin[user] + rng.random(len(user)) * span[user]) * SECONDS_PER_DAY).astype(np.int64)
    return {
        "user": user,
        "kind": np.full(len(user), kind),
        "item": item,
        "category": np.full(len(user), -1),
        "second": second,
    }


def draw_preferences(
    config: SimulationConfig, catalog: Catalog, pop: Population, rng: np.random.Generator
) -> Preferences:
    p = config.params
    begin = np.maximum(pop.signup_day, 0.0)
    span = np.clip(np.minimum(pop.churn_day, config.days) - begin, 0.0, None)
    wish = _item_preferences(WISHLIST, p.wishlist_per_day, catalog, pop, span, begin, rng)
    saved = _item_preferences(SAVED, p.saved_per_day, catalog, pop, span, begin, rng)

    # profile: some users name their 1-3 strongest categories right after signing up
    states = rng.random(pop.n) < p.profile_share
    how_many = np.where(states, 1 + rng.binomial(MAX_PROFILE_CATEGORIES - 1, 0.4, size=pop.n), 0)
    ranked = np.argsort(-pop.taste, axis=1, kind="stable")[:, :MAX_PROFILE_CATEGORIES]
    user = np.repeat(np.arange(pop.n), how_many)
    rank = np.arange(len(user)) - (np.cumsum(how_many) - how_many)[user]
    delay = rng.exponential(0.2, size=len(user))  # days after signup
    second = np.floor((pop.signup_day[user] + delay) * SECONDS_PER_DAY).astype(np.int64)
    profile = {
        "user": user,
        "kind": np.full(len(user), PROFILE_CATEGORY),
        "item": np.full(len(user), -1),
        "category": ranked[user, rank],
        "second": second,
    }

    cols = {key: np.concatenate([wish[key], saved[key], profile[key]]) for key in wish}
    observed = cols["second"] < config.days * SECONDS_PER_DAY
    cols = {key: value[observed] for key, value in cols.items()}
    # one row per (user, kind, item, category): the first time counts
    order = np.lexsort((cols["second"], cols["category"], cols["item"], cols["kind"], cols["user"]))
    cols = {key: value[order] for key, value in cols.items()}
    key = np.stack([cols["user"], cols["kind"], cols["item"], cols["category"]], axis=1)
    first = np.ones(len(key), dtype=bool)
    first[1:] = (key[1:] != key[:-1]).any(axis=1)
    return Preferences(**{k: v[first] for k, v in cols.items()})

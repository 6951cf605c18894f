"""The item catalogue and the vectorised "which item does this user look at" sampler.

Item choice depends on the user's category taste and on their price sensitivity. Price sensitivity is bucketed
into a few bins so that every (category, bin) pair has one precomputed cumulative distribution; all of them live
in one flat array offset by the group number, so a single ``searchsorted`` samples millions of items at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ltvfeed.simulator.columns import SECONDS_PER_DAY, sequential_ids, timestamps
from ltvfeed.simulator.config import SimulationConfig
from ltvfeed.simulator.schema import RAW_SCHEMAS
from ltvfeed.simulator.vocab import ADJECTIVES, BRAND_SYLLABLES, CATEGORIES, QUERY_ADJECTIVES

PRICE_BINS = 5
# Price elasticity of item choice per price-sensitivity bin: insensitive users lean to dearer items.
PRICE_ELASTICITY = np.linspace(-0.6, 1.8, PRICE_BINS)
QUERIES_PER_ITEM = 5
CONSUMABLE_EXTRA_QUANTITY = 0.6  # mean extra units per line for consumables at average spend level
DURABLE_EXTRA_QUANTITY = 0.05


@dataclass(frozen=True)
class Catalog:
    category: np.ndarray  # category index per item
    price_cents: np.ndarray
    extra_quantity: np.ndarray  # Poisson mean of units beyond the first, at spend level 1
    item_ids: pa.Array
    queries: pa.Array  # QUERIES_PER_ITEM search strings per item, row-major
    table: pa.Table  # the items table as emitted
    group_cdf: np.ndarray  # group g's cumulative weights, shifted into [g, g + 1)
    group_items: np.ndarray  # item index at each position of group_cdf
    line_value: np.ndarray  # (categories, bins): expected line value in cents at spend level 0 ...
    line_value_per_basket: np.ndarray  # ... plus this times the user's basket multiplier
    cycle_days: np.ndarray  # days until a buyer re-buys the item (consumables; inf = never re-bought)

    @property
    def n_items(self) -> int:
        return len(self.category)

    def sample_items(self, category: np.ndarray, price_bin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item per row, drawn within its category with the bin's price preference."""
        group = category.astype(np.int64) * PRICE_BINS + price_bin
        # scaled below 1 so that g + u stays below g + 1 after rounding even for the last group
        u = rng.random(len(group)) * (1.0 - 1e-9)
        pos = np.searchsorted(self.group_cdf, group + u, side="right")
        return self.group_items[np.minimum(pos, len(self.group_items) - 1)]


def _brand_names(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct pronounceable brand names (a loop over brands, a few hundred at most)."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        k = 2 if rng.random() < 0.7 else 3
        name = "".join(BRAND_SYLLABLES[i] for i in rng.integers(0, len(BRAND_SYLLABLES), size=k)).capitalize()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _assign_categories(n_items: int, rng: np.random.Generator) -> np.ndarray:
    """Every category gets at least one item; the rest follow the category weights."""
    n_cat = len(CATEGORIES)
    weights = np.array([c.weight for c in CATEGORIES])
    rest = rng.choice(n_cat, size=n_items - n_cat, p=weights / weights.sum())
    return rng.permutation(np.concatenate([np.arange(n_cat), rest]))


def _sampling_groups(
    category: np.ndarray, price: np.ndarray, popularity: np.ndarray, extra_quantity: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_cat = len(CATEGORIES)
    cdfs, items = [], []
    line_value = np.zeros((n_cat, PRICE_BINS))
    line_value_per_basket = np.zeros((n_cat, PRICE_BINS))
    for c in range(n_cat):  # loop over categories x bins: 80 groups
        members = np.flatnonzero(category == c)
        relative_price = price[members] / np.median(price[members])
        for b, elasticity in enumerate(PRICE_ELASTICITY):
            w = popularity[members] * relative_price ** (-elasticity)
            w = w / w.sum()
            cdf = np.cumsum(w)
            cdf[-1] = 1.0
            cdfs.append(c * PRICE_BINS + b + cdf)
            items.append(members)
            line_value[c, b] = float(w @ price[members])
            line_value_per_basket[c, b] = float(w @ (price[members] * extra_quantity[members]))
    group_cdf = np.concatenate(cdfs)
    # the last entry of group g is exactly g + 1: draws g + u (u < 1) never leave their group
    return group_cdf, np.concatenate(items), line_value, line_value_per_basket


def build_catalog(config: SimulationConfig) -> Catalog:
    """Items with category, lognormal price per category, brand, popularity, stock and repeat flags."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC0FFEE]))
    n = config.n_items
    category = _assign_categories(n, rng)

    # brands: a pool per category, popular brands sell more
    brands_per_cat = max(2, round(np.sqrt(n / len(CATEGORIES)) * 1.5))
    brand_names = np.array(_brand_names(brands_per_cat * len(CATEGORIES), rng), dtype=object)
    brand_effect = rng.lognormal(0.0, 0.5, size=len(brand_names))
    brand = category * brands_per_cat + rng.integers(0, brands_per_cat, size=n)

    median = np.array([c.median_price for c in CATEGORIES])[category]
    sigma = np.array([c.price_sigma for c in CATEGORIES])[category]
    price = np.maximum(median * rng.lognormal(0.0, sigma), 1.0)
    price_cents = (np.floor(price) * 100 + 99).astype(np.int64)  # shop prices end in .99
    popularity = rng.lognormal(0.0, 1.0, size=n) * brand_effect[brand]

    consumable = np.array([c.consumable for c in CATEGORIES])[category]
    extra_quantity = np.where(consumable, CONSUMABLE_EXTRA_QUANTITY, DURABLE_EXTRA_QUANTITY)
    in_stock = rng.random(n) < config.params.in_stock_share

    # words: one product noun per item; titles and search queries are built from it
    noun_pool = [noun for c in CATEGORIES for noun in c.nouns]
    noun_start = np.cumsum([0] + [len(c.nouns) for c in CATEGORIES])[:-1]
    noun_count = np.array([len(c.nouns) for c in CATEGORIES])
    noun = noun_start[category] + (rng.random(n) * noun_count[category]).astype(np.int64)
    nouns = pa.array(noun_pool).take(pa.array(noun))
    brand_col = pa.array(brand_names[brand].tolist(), type=pa.string())
    adjective = pa.array(ADJECTIVES).take(pa.array(rng.integers(0, len(ADJECTIVES), size=n)))
    model = sequential_ids("", rng.integers(100, 1000, size=n), 3)
    title = pc.binary_join_element_wise(brand_col, adjective, nouns, model, " ")
    brand_lower = pc.utf8_lower(brand_col)
    category_names = pa.array([c.name for c in CATEGORIES]).take(pa.array(category))
    query_adjective = pa.array(QUERY_ADJECTIVES).take(pa.array(rng.integers(0, len(QUERY_ADJECTIVES), size=n)))
    query_variants = [
        nouns,
        pc.binary_join_element_wise(brand_lower, nouns, " "),
        pc.binary_join_element_wise(query_adjective, nouns, " "),
        brand_lower,
        pc.replace_substring(category_names, "_", " "),
    ]
    assert len(query_variants) == QUERIES_PER_ITEM
    queries = pa.concat_arrays(query_variants).take(
        pa.array((np.arange(QUERIES_PER_ITEM)[None, :] * n + np.arange(n)[:, None]).ravel())
    )

    created_seconds = -np.floor(rng.uniform(1, 730, size=n) * SECONDS_PER_DAY).astype(np.int64)
    item_ids = sequential_ids("i", np.arange(1, n + 1), 6)
    table = pa.Table.from_arrays(
        [
            item_ids,
            category_names,
            pa.array(price_cents / 100.0),
            brand_col,
            title,
            pa.array(in_stock),
            pa.array(consumable),
            timestamps(config.start, created_seconds),
            pa.array(np.ones(n, dtype=bool)),  # every simulated item is merchandise
        ],
        schema=RAW_SCHEMAS["items"],
    )
    group_cdf, group_items, line_value, line_value_per_basket = _sampling_groups(
        category, price_cents.astype(np.float64), popularity, extra_quantity
    )
    return Catalog(
        category=category,
        price_cents=price_cents,
        extra_quantity=extra_quantity,
        item_ids=item_ids,
        queries=queries,
        table=table,
        group_cdf=group_cdf,
        group_items=group_items,
        line_value=line_value,
        line_value_per_basket=line_value_per_basket,
        cycle_days=_cycles(config, consumable),
    )


def _cycles(config: SimulationConfig, consumable: np.ndarray) -> np.ndarray:
    """Per item re-buy cycle in days: lognormal around the median for consumables, never for durables (own
    random stream, so the rest of the catalogue does not depend on it)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC1C1E]))
    p = config.params
    cycle = p.rebuy_cycle_days * rng.lognormal(0.0, p.rebuy_cycle_sigma, size=len(consumable))
    return np.where(consumable, np.maximum(cycle, 1.0), np.inf)

"""The closed loop's shop: a simulated shop loaded through the ingest, its marts built by dbt and a committed
feed generation (classic + personalised feeds) in Redis — the same functions ``ltvfeed simulate``,
``ltvfeed dbt build`` and ``ltvfeed feeds generate`` run — plus what the simulated users themselves know: their
hidden traits, the catalogue as shoppers see it and their own past purchases."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ltvfeed.infra.stack import Stack
from ltvfeed.serving.config import ScoringWeights
from ltvfeed.settings import Settings
from ltvfeed.simulator import SimulationConfig
from ltvfeed.simulator.columns import SECONDS_PER_DAY
from ltvfeed.simulator.response import ItemAttributes, ResponseMemory, UserTraits

# what feed generation reads (the tests of generation build exactly these)
GENERATION_MARTS = ("+user_features", "+item_performance", "+user_category_propensity")
PROPENSITY_SOURCE = "category_affinity"  # the served P(purchase) the benchmarks found best (docs/benchmarks.md)
DATABASE_SUFFIX, PREFIX_SUFFIX = "_closed_loop", "closed_loop:"


@dataclass(frozen=True)
class Shoppers:
    """The simulated users as the response model sees them (never anything the ranking produced)."""

    traits: UserTraits
    items: ItemAttributes
    memory: ResponseMemory
    user_row: dict[str, int]
    item_row: dict[str, int]
    start: datetime  # the simulation's day 0

    def sim_day(self, at: datetime) -> float:
        return (at - self.start).total_seconds() / SECONDS_PER_DAY


def fresh_stack(settings: Settings) -> Stack:
    """The stack with the closed loop's own warehouse database and Redis prefix (``<warehouse_db>_closed_loop``,
    ``<redis_prefix>closed_loop:``), emptied: every run starts from a fresh simulated shop and never mixes
    with the shop's real data. Same servers, state dir and MLflow (reports show beside the others)."""
    import redis

    from ltvfeed.db import drop_database
    from ltvfeed.infra.stack import up
    from ltvfeed.redis_keys import glob_escape

    own = settings.model_copy(
        update={
            "warehouse_db": f"{settings.warehouse_db}{DATABASE_SUFFIX}",
            "redis_prefix": f"{settings.redis_prefix}{PREFIX_SUFFIX}",
        }
    )
    stack = up(own)
    drop_database(stack.pg_dsn, own.warehouse_db)
    client = redis.Redis.from_url(stack.redis_url)
    try:
        pattern = glob_escape(own.redis_prefix) + "*"
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()
    return up(own)


def simulate_and_load(stack: Stack, config: SimulationConfig, shop_dir: Path) -> None:
    """Simulate the shop into ``shop_dir`` and load it through the ingest (as any file drop)."""
    from ltvfeed.simulator import simulate_to_directory
    from ltvfeed.simulator.load import load_into_warehouse

    simulate_to_directory(config, shop_dir, progress=False)
    load_into_warehouse(stack.warehouse_dsn, shop_dir)


def build_generation_marts(stack: Stack, as_of: date, target: Path) -> None:
    """The marts snapshot feed generation reads for ``as_of`` (everything the warehouse holds before it)."""
    from ltvfeed.dbt_runner import run_dbt

    args = ["run", "--select", *GENERATION_MARTS, "--vars", json.dumps({"as_of": as_of.isoformat()})]
    run_dbt(stack.env(), args, target_path=target)


def generate_feeds(stack: Stack, as_of: date, n: int, variants: dict[str, ScoringWeights] | None = None) -> str:
    """A committed generation for ``as_of`` with the arms' ``variants`` (one shard: the loop runs on a small
    machine); its id."""
    from ltvfeed.orchestration.feed_tasks import run_generation
    from ltvfeed.serving.generation import GenerationParams

    params = GenerationParams(
        as_of=as_of, n=n, shards=1, propensity_source=PROPENSITY_SOURCE, variants=dict(variants or {})
    )
    return run_generation(stack.settings, params, progress=False)["generation"]


def shoppers(config: SimulationConfig, shop_dir: Path) -> Shoppers:
    """Traits and catalogue of the simulated shop, and each user's memory of their purchases in it."""
    from ltvfeed.simulator.catalog import build_catalog
    from ltvfeed.simulator.shop import hidden_populations

    traits = UserTraits.from_populations(hidden_populations(config))
    items = ItemAttributes.from_catalog(build_catalog(config))
    user_row = {u: i for i, u in enumerate(traits.user_ids)}
    item_row = {u: i for i, u in enumerate(items.item_ids)}
    memory = ResponseMemory(traits.n, items.n)
    start = config.start
    orders = pd.read_parquet(shop_dir / "orders", columns=["order_id", "user_id", "ordered_at"])
    lines = pd.read_parquet(shop_dir / "order_items", columns=["order_id", "item_id"])
    bought = lines.merge(orders, on="order_id")
    if len(bought):
        days = (pd.to_datetime(bought["ordered_at"], utc=True) - pd.Timestamp(start)).dt.total_seconds()
        memory.record_purchases(
            bought["user_id"].map(user_row).to_numpy(),
            bought["item_id"].map(item_row).to_numpy(),
            (days / SECONDS_PER_DAY).to_numpy(),
        )
    return Shoppers(traits, items, memory, user_row, item_row, start)


def item_rows(shop: Shoppers, item_ids: list[list[str]], n: int) -> np.ndarray:
    """Served feeds (item ids in served order) as item rows, padded with -1 to ``n`` columns."""
    served = np.full((len(item_ids), n), -1, dtype=np.int64)
    for v, ids in enumerate(item_ids):
        rows = [shop.item_row[i] for i in ids[:n]]
        served[v, : len(rows)] = rows
    return served

"""A throwaway stack for a bench: the configured (or embedded) servers with a warehouse database, an MLflow
database, a state dir and a Redis key prefix of the bench's own, all removed when the bench ends."""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack


@contextmanager
def scratch_stack(name: str) -> Iterator[tuple[Stack, Path]]:
    """(the stack, a temporary folder for the bench's files); databases ``ltvfeed_bench_<name>_<tag>``."""
    from ltvfeed.infra.stack import discard, up
    from ltvfeed.settings import Settings

    servers = up(Settings())
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            pg_dsn=servers.pg_dsn,
            redis_url=servers.redis_url,
            state_dir=Path(tmp) / "state",
            warehouse_db=f"ltvfeed_bench_{name}_{tag}",
            mlflow_db=f"ltvfeed_bench_{name}_{tag}_mlflow",
            redis_prefix=f"{servers.settings.redis_prefix}bench_{name}_{tag}:",
        )
        stack = up(settings)
        try:
            yield stack, Path(tmp)
        finally:
            discard(stack)


def build_serving_marts(stack: Stack, snapshots: Iterable[date], target_path: Path) -> None:
    """dbt builds, for each as_of in ``snapshots``, the marts feed generation and the propensity gate read
    (``user_features``, ``item_performance``, ``user_category_propensity`` and what they depend on)."""
    from ltvfeed.dbt_runner import run_dbt

    for as_of in snapshots:
        run_dbt(
            stack.env(),
            ["run", "--select", "+user_features", "+item_performance", "+user_category_propensity",
             "--vars", json.dumps({"as_of": as_of.isoformat()})],
            target_path=target_path,
        )  # fmt: skip


def add_shop_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulated shop's size and seed (``--users --items --days --seed``): that of bench_generation
    --quality-only unless given."""
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)


def load_simulated_shop(
    stack: Stack, tmp: Path, args: argparse.Namespace, end: date, snapshots: Iterable[date]
) -> None:
    """Simulate the shop of ``args`` (:func:`add_shop_arguments`) up to ``end`` into the stack's warehouse and
    build the serving marts of ``snapshots``."""
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory
    from ltvfeed.simulator.load import load_into_warehouse

    shop = tmp / "shop"
    config = SimulationConfig(n_users=args.users, n_items=args.items, days=args.days, seed=args.seed, end_date=end)
    simulate_to_directory(config, shop, progress=False)
    load_into_warehouse(stack.warehouse_dsn, shop)
    build_serving_marts(stack, snapshots, tmp / "target")

"""A throwaway stack for a bench: the configured (or embedded) servers with a warehouse database, an MLflow
database, a state dir and a Redis key prefix of the bench's own, all removed when the bench ends."""

from __future__ import annotations

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

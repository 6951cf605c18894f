"""The main job end to end on a demo shop: what ``ltvfeed demo`` does."""

from __future__ import annotations

from datetime import date

import typer

from ltvfeed.db import connect
from ltvfeed.settings import Settings

SUMMARY_TABLES = (
    "raw.users",
    "raw.items",
    "raw.orders",
    "raw.events",
    "raw.preferences",
    "ops.quarantine",
    "marts.user_features",
    "marts.item_performance",
    "marts.user_category_propensity",
    "marts.ltv_labels",
)


def table_counts(dsn: str, tables: tuple[str, ...] = SUMMARY_TABLES) -> dict[str, int | None]:
    """Row counts; None for a table that does not exist (yet)."""
    counts: dict[str, int | None] = {}
    with connect(dsn) as conn:
        for table in tables:
            exists = conn.execute("select to_regclass(%s)", (table,)).fetchone()[0]
            counts[table] = conn.execute(f"select count(*) from {table}").fetchone()[0] if exists else None
    return counts


def run_demo(settings: Settings, *, users: int, items: int, days: int, seed: int, end_date: date) -> None:
    from ltvfeed.dbt_runner import parse as dbt_parse
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.airflow_cli import test_dag
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory
    from ltvfeed.simulator.load import load_ground_truth

    stack = up(settings)
    typer.echo(f"stack: postgres {stack.pg_dsn}, redis {stack.redis_url}")

    typer.echo(f"simulating {users} users x {items} items x {days} days (seed {seed}) ...")
    config = SimulationConfig(n_users=users, n_items=items, days=days, seed=seed, end_date=end_date)
    simulate_to_directory(config, settings.landing_dir)
    load_ground_truth(stack.warehouse_dsn, settings.landing_dir)

    dbt_parse(stack.env())  # manifest for Cosmos, so the DAG renders one task per model without `dbt ls`
    typer.echo(f"running ltv_pipeline for as_of={end_date} (airflow dags test) ...")
    test_dag(stack, "ltv_pipeline", end_date)

    typer.echo("\nltv_pipeline succeeded. Rows:")
    for table, n in table_counts(stack.warehouse_dsn).items():
        typer.echo(f"  {table:34} {'-' if n is None else n}")
    typer.echo(
        f"""
Where to look:
  warehouse      psql "{stack.warehouse_dsn}"   (schemas raw, staging, intermediate, marts, ops)
  Data Docs      {settings.quality_dir / "data_docs" / "index.html"}
  Airflow UI     .venv/bin/ltvfeed airflow standalone   (then http://127.0.0.1:{settings.airflow_port})
  landing files  {settings.landing_dir}"""
    )

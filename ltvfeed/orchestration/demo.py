"""The main job end to end on a demo shop: what ``ltvfeed demo`` does.

The four DAGs in the order their assets chain them (ltv_pipeline -> ltv_retrain -> propensity_retrain ->
feed_generation), each as one ``airflow dags test`` run for the demo's cutoff, printed as a line per task with its
duration (Airflow's output goes to a log file per run under the state dir; ``verbose`` prints it too). Horizons
are short (30 days) so that a shop of a few months has complete labels for every training cutoff.

The demo shop ends the day before the first demo ran (the cutoff is that day, recorded in
``<state_dir>/demo.json``): unpausing the DAGs right afterwards gives green scheduled runs (the freshness gate
sees yesterday's data), and re-running the demo on a later day reuses the same shop, so it stays idempotent.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime

import typer

from ltvfeed.cutoff import required_as_of
from ltvfeed.errors import UserError
from ltvfeed.settings import Settings
from ltvfeed.warehouse.extent import table_counts

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
    "marts.user_ltv_predictions",
)
DEMO_HORIZON_DAYS = 30
LEGACY_DEMO_END_DATE = date(2026, 11, 1)  # the fixed cutoff of demos run before <state_dir>/demo.json


def demo_end_date(settings: Settings) -> date:
    """The demo's cutoff: recorded by the first demo of this state dir, else today (UTC; data ends yesterday)."""
    record = settings.state_dir / "demo.json"
    try:
        return required_as_of(json.loads(record.read_text())["end_date"], "end_date")
    except (FileNotFoundError, KeyError, ValueError, UserError):
        # a landing folder filled by a demo from before this record existed: keep that demo's fixed cutoff, or a
        # second, shifted shop would be imported over the first
        earlier = settings.landing_dir.is_dir() and any(settings.landing_dir.glob("users/*"))
        end = LEGACY_DEMO_END_DATE if earlier else datetime.now(UTC).date()
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"end_date": end.isoformat()}))
        return end


def run_demo(
    settings: Settings, *, users: int, items: int, days: int, seed: int, end_date: date, verbose: bool = False
) -> None:
    from ltvfeed.dbt_runner import parse as dbt_parse
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.dag_test import run_dag_test
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory
    from ltvfeed.simulator.load import load_ground_truth

    stack = up(settings)
    typer.echo(f"stack: postgres {stack.pg_dsn}, redis {stack.redis_url}")

    typer.echo(f"simulating {users} users x {items} items x {days} days (seed {seed}) ...")
    config = SimulationConfig(n_users=users, n_items=items, days=days, seed=seed, end_date=end_date)
    simulate_to_directory(config, settings.landing_dir, progress=verbose)
    load_ground_truth(stack.warehouse_dsn, settings.landing_dir)

    dbt_parse(stack.env())  # manifest for Cosmos, so the DAG renders one task per model without `dbt ls`
    runs = (
        ("ltv_pipeline", None),
        ("ltv_retrain", {"horizon_days": DEMO_HORIZON_DAYS, "train_cutoffs": 2}),
        ("propensity_retrain", {"propensity_horizon_days": DEMO_HORIZON_DAYS}),
        ("feed_generation", {"shards": 2}),
    )
    logs = []
    for dag_id, conf in runs:
        started = time.monotonic()
        typer.echo(f"{dag_id} for as_of={end_date} (airflow dags test) ...")
        result = run_dag_test(stack, dag_id, end_date, conf, quiet=not verbose, echo=typer.echo)
        typer.echo(f"{dag_id} succeeded in {time.monotonic() - started:.0f} s")
        logs.append(result.log)

    typer.echo(f"\nAll four DAGs succeeded (Airflow's output: {logs[0].parent}). Rows:")
    for table, n in table_counts(stack.warehouse_dsn, SUMMARY_TABLES).items():
        typer.echo(f"  {table:34} {'-' if n is None else n}")
    _show_feed(settings, stack)
    typer.echo(
        f"""
Where to look:
  warehouse      psql "{stack.warehouse_dsn}"   (schemas raw, staging, intermediate, marts, ops)
  Data Docs      {settings.quality_dir / "data_docs" / "index.html"}
  Airflow UI     .venv/bin/ltvfeed airflow standalone   (then http://127.0.0.1:{settings.airflow_port})
  MLflow UI      .venv/bin/ltvfeed mlflow ui   (models ltv and purchase_propensity, alias champion)
  feed API       .venv/bin/ltvfeed serve   (then http://127.0.0.1:{settings.api_port}/docs)
  landing files  {settings.landing_dir}"""
    )


def _show_feed(settings: Settings, stack) -> None:
    """One personal feed as the API would serve it, read back from the committed generation in Redis."""
    from ltvfeed.orchestration.feed_tasks import feed_store
    from ltvfeed.training.ltv_run import MODEL_NAME
    from ltvfeed.training.registry import current_champion
    from ltvfeed.warehouse.ltv_reads import top_predicted_user

    store = feed_store(stack)
    generation = store.current_generation()
    champion = current_champion(stack, MODEL_NAME)  # never a rolled-back version's scores
    user = top_predicted_user(stack.warehouse_dsn, MODEL_NAME, champion) if champion else None
    feed = store.read_feed(user) if user else None
    if feed is None:
        return
    typer.echo(f"\nFeed of {user} (the highest predicted LTV by {MODEL_NAME} v{champion}), generation {generation}:")
    for item in feed.items[:5]:
        purchase = "-" if item.purchase is None else f"{item.purchase:.3f}"
        typer.echo(
            f"  {item.item_id:12} score {item.score:.3f} = commercial {item.commercial:.3f}, "
            f"purchase {purchase}, diversity {item.diversity:.3f}"
        )

"""``ltvfeed pipeline run``, ``ltvfeed airflow ...`` and ``ltvfeed demo``: the DAGs, by hand."""

from __future__ import annotations

from datetime import date

import typer

from ltvfeed.settings import get_settings

pipeline_app = typer.Typer(help="Run the Airflow DAGs in-process (airflow dags test).")

DEMO_END_DATE = date(2026, 11, 1)  # fixed, so that re-running the demo on another day is still idempotent


@pipeline_app.command("run")
def run_cmd(
    as_of: str = typer.Option(None, help="Cutoff date YYYY-MM-DD (default: today, UTC)"),
    dag_id: str = typer.Option("ltv_pipeline", help="DAG to run"),
) -> None:
    """One run of a DAG for a cutoff date, in this process (SQLite Airflow metadata under the state dir)."""
    from datetime import UTC, datetime

    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.airflow_cli import test_dag

    stack = up(get_settings())
    test_dag(stack, dag_id, date.fromisoformat(as_of) if as_of else datetime.now(UTC).date())


def airflow_cmd(ctx: typer.Context) -> None:
    """Airflow's own CLI with this project's environment, e.g. `ltvfeed airflow standalone`."""
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.airflow_cli import ensure_metadata_db, run_airflow

    stack = up(get_settings())
    ensure_metadata_db(stack)
    raise typer.Exit(run_airflow(stack, list(ctx.args), check=False))


def demo_cmd(
    users: int = typer.Option(2000, help="Simulated users"),
    items: int = typer.Option(300, help="Simulated items"),
    days: int = typer.Option(120, help="Observed days"),
    seed: int = typer.Option(7, help="Random seed"),
) -> None:
    """Stack up, simulate a small shop, run ltv_pipeline end to end, print where the results are."""
    from ltvfeed.orchestration.demo import run_demo

    run_demo(get_settings(), users=users, items=items, days=days, seed=seed, end_date=DEMO_END_DATE)


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
    app.command(
        "airflow", context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
    )(airflow_cmd)
    app.command("demo")(demo_cmd)

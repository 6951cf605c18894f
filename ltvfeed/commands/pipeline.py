"""``ltvfeed pipeline run|backfill``, ``ltvfeed airflow ...`` and ``ltvfeed demo``: the DAGs, by hand."""

from __future__ import annotations

from datetime import date

import typer

from ltvfeed.settings import get_settings

pipeline_app = typer.Typer(help="Run the Airflow DAGs: one run in-process (airflow dags test), or backfills.")

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


@pipeline_app.command("backfill")
def backfill_cmd(
    start: str = typer.Option(..., "--from", help="First cutoff day YYYY-MM-DD (inclusive)"),
    end: str = typer.Option(..., "--to", help="Last cutoff day YYYY-MM-DD (inclusive)"),
    dag_id: str = typer.Option("ltv_retrain", help="DAG to backfill"),
    conf: str = typer.Option(None, help="DAG run conf as JSON, e.g. '{\"horizon_days\": 90}'"),
    reprocess: str = typer.Option("none", help="Cutoffs that already have a run: none | completed | failed"),
    timeout: float = typer.Option(3600, help="Seconds to wait for every run"),
) -> None:
    """A real backfill (one run per scheduled cutoff in the range): starts a scheduler and the execution API,
    waits for the runs, stops them. Fails naming the failed runs and tasks."""
    import json

    from ltvfeed.commands.options import date_option
    from ltvfeed.errors import UserError
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.backfill import run_backfill

    try:
        run_conf = json.loads(conf) if conf else None
    except json.JSONDecodeError as exc:
        raise UserError(f"--conf must be JSON: {exc}") from exc
    if run_conf is not None and not isinstance(run_conf, dict):
        raise UserError("--conf must be a JSON object")
    first, last = date_option(start, "--from"), date_option(end, "--to")
    if first is None or last is None:
        raise UserError("give --from and --to")
    stack = up(get_settings())
    result = run_backfill(
        stack, dag_id, first, last, conf=run_conf, reprocess=reprocess, timeout_s=timeout, echo=typer.echo
    )
    typer.echo(f"backfill {result.backfill_id}: {len(result.runs)} run(s) succeeded:")
    for run in result.runs:
        typer.echo(f"  {run.run_id}")


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

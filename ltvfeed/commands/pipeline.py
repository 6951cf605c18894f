"""``ltvfeed pipeline run|backfill``, ``ltvfeed airflow ...`` and ``ltvfeed demo``: the DAGs, by hand."""

from __future__ import annotations

from typing import Any

import typer

from ltvfeed.settings import get_settings

pipeline_app = typer.Typer(help="Run the Airflow DAGs: one run in-process (airflow dags test), or backfills.")

CONF_HELP = "DAG run conf (params) as JSON, e.g. '{\"horizon_days\": 90}'"


def parse_conf(conf: str | None) -> dict[str, Any] | None:
    """``--conf`` JSON -> a dict; UserError naming the problem otherwise."""
    import json

    from ltvfeed.errors import UserError

    if not conf:
        return None
    try:
        value = json.loads(conf)
    except json.JSONDecodeError as exc:
        raise UserError(f"--conf must be JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UserError("--conf must be a JSON object, e.g. '{\"horizon_days\": 90}'")
    return value


@pipeline_app.command("run")
def run_cmd(
    as_of: str = typer.Option(None, help="Cutoff date YYYY-MM-DD (default: today, UTC)"),
    dag_id: str = typer.Option("ltv_pipeline", help="DAG to run"),
    conf: str = typer.Option(None, help=CONF_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print Airflow's whole output, not only progress"),
) -> None:
    """One run of a DAG for a cutoff date, in this process (SQLite Airflow metadata under the state dir). Prints a
    line per finished task; fails naming the failed task and its error, or when no task ran."""
    from datetime import UTC, datetime

    from ltvfeed.commands.options import date_option
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.dag_test import run_dag_test

    run_conf = parse_conf(conf)
    cutoff = date_option(as_of, "--as-of") or datetime.now(UTC).date()
    stack = up(get_settings())
    typer.echo(f"{dag_id} for as_of={cutoff} (airflow dags test) ...")
    result = run_dag_test(stack, dag_id, cutoff, run_conf, quiet=not verbose, echo=typer.echo)
    typer.echo(f"{dag_id} succeeded: {len(result.tasks)} task(s) in {result.seconds:.0f} s; full log: {result.log}")


@pipeline_app.command("backfill")
def backfill_cmd(
    start: str = typer.Option(..., "--from", help="First cutoff day YYYY-MM-DD (inclusive)"),
    end: str = typer.Option(..., "--to", help="Last cutoff day YYYY-MM-DD (inclusive)"),
    dag_id: str = typer.Option("ltv_retrain", help="DAG to backfill"),
    conf: str = typer.Option(None, help=CONF_HELP),
    reprocess: str = typer.Option("none", help="Cutoffs that already have a run: none | completed | failed"),
    timeout: float = typer.Option(3600, help="Seconds to wait for every run"),
) -> None:
    """A real backfill (one run per scheduled cutoff in the range): starts a scheduler and the execution API,
    waits for the runs, stops them. Fails naming the failed runs and tasks."""
    from ltvfeed.commands.options import date_option
    from ltvfeed.errors import UserError
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.backfill import run_backfill

    run_conf = parse_conf(conf)
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
    """Airflow's own CLI with this project's environment; `ltvfeed airflow standalone` runs the UI, scheduler,
    DAG processor and triggerer on 127.0.0.1, stopped together by Ctrl-C / SIGTERM / `ltvfeed stack down`."""
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.airflow_cli import ensure_metadata_db, run_airflow

    stack = up(get_settings())
    args = list(ctx.args)
    if args == ["standalone"]:
        from ltvfeed.orchestration.standalone import run_standalone

        raise typer.Exit(run_standalone(stack))
    ensure_metadata_db(stack)
    if args[:2] == ["dags", "trigger"]:
        _say_if_paused(stack, [a for a in args[2:] if not a.startswith("-")][:1])
    raise typer.Exit(run_airflow(stack, args, check=False))


def _say_if_paused(stack, dag_ids: list[str]) -> None:
    """A run triggered on a paused DAG waits in 'queued' without a word from Airflow: say so."""
    from ltvfeed.orchestration.airflow_env import airflow_env
    from ltvfeed.orchestration.backfill_metadata import Metadata

    meta = Metadata(airflow_env(stack)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    for dag_id in dag_ids:
        if meta.dag_exists(dag_id) and meta.is_paused(dag_id):
            typer.secho(
                f"note: {dag_id} is paused: this run stays queued until it is unpaused "
                f"(ltvfeed airflow dags unpause {dag_id}; unpausing also starts its schedule)",
                err=True,
                fg="yellow",
            )


def demo_cmd(
    users: int = typer.Option(2000, help="Simulated users"),
    items: int = typer.Option(300, help="Simulated items"),
    days: int = typer.Option(120, help="Observed days"),
    seed: int = typer.Option(7, help="Random seed"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print Airflow's whole output, not only progress"),
) -> None:
    """Stack up, simulate a small shop, run the four DAGs (ltv_pipeline, ltv_retrain, propensity_retrain,
    feed_generation) end to end, show a feed, print where the results are."""
    from ltvfeed.orchestration.demo import demo_end_date, run_demo

    settings = get_settings()
    run_demo(
        settings, users=users, items=items, days=days, seed=seed, end_date=demo_end_date(settings), verbose=verbose
    )


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
    app.command(
        "airflow", context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
    )(airflow_cmd)
    app.command("demo")(demo_cmd)

"""``ltvfeed dbt build|parse``: the warehouse transformations, runnable by hand like the DAG runs them.

(This module shares its name with the ``dbt`` package: absolute imports only, and dbt itself runs as a
subprocess, see ltvfeed.dbt_runner.)
"""

from __future__ import annotations

import typer

from ltvfeed.commands.options import date_option
from ltvfeed.cutoff import DEFAULT_HORIZON_DAYS
from ltvfeed.settings import get_settings

dbt_app = typer.Typer(help="Build the dbt models (staging -> intermediate -> marts) with their tests.")


@dbt_app.command("build")
def build_cmd(
    as_of: str | None = typer.Option(
        None, "--as-of", help="Feature cutoff YYYY-MM-DD (uses data before it). Default: day after the latest data."
    ),
    horizon_days: int | None = typer.Option(
        None, "--horizon-days", help=f"LTV label window in days (default {DEFAULT_HORIZON_DAYS})."
    ),
    select: str | None = typer.Option(None, "--select", "-s", help="dbt selection, e.g. 'user_features+'."),
    full_refresh: bool = typer.Option(
        False, "--full-refresh", help="Rebuild incremental models from scratch (drops snapshot history)."
    ),
) -> None:
    """Run and test the models for one cutoff; re-running a cutoff replaces its snapshot."""
    from ltvfeed.dbt_runner import build
    from ltvfeed.infra.stack import up

    cutoff = date_option(as_of, "--as-of")
    stack = up(get_settings())
    build(stack, cutoff, horizon_days, select, full_refresh=full_refresh, echo=typer.echo)


@dbt_app.command("parse")
def parse_cmd() -> None:
    """Validate the project and write <state_dir>/dbt/target/manifest.json for Cosmos (no database needed)."""
    from ltvfeed.dbt_runner import parse

    manifest = parse()
    typer.echo(f"manifest {manifest}")


def register(app: typer.Typer) -> None:
    app.add_typer(dbt_app, name="dbt")

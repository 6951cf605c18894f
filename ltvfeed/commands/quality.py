"""``ltvfeed quality check raw|marts``: run a data-quality gate by hand, exactly as the pipeline runs it."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import typer

from ltvfeed.commands.options import date_option
from ltvfeed.settings import get_settings

if TYPE_CHECKING:
    from ltvfeed.quality import CheckOutcome, GateResult

quality_app = typer.Typer(help="Great Expectations gates on the warehouse (raw tables, dbt marts).")


class LayerName(StrEnum):
    raw = "raw"
    marts = "marts"


@quality_app.command("check")
def check_cmd(
    layer: LayerName = typer.Argument(..., help="Which layer: raw (landing tables) or marts (dbt output)."),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        help="Cutoff YYYY-MM-DD. Default: today (UTC) for raw; for marts the day after the latest raw event or "
        "order, like `ltvfeed dbt build`.",
    ),
) -> None:
    """Validate LAYER, print a pass/fail table and the Data Docs path; exit 1 when an expectation fails."""
    from ltvfeed.infra.stack import up
    from ltvfeed.quality import DataQualityError, default_as_of, run_gate

    day = date_option(as_of, "--as-of") if as_of else None
    stack = up(get_settings())
    day = day or default_as_of(stack.warehouse_dsn, layer.value)
    typer.echo(f"checking {layer.value} as of {day} (loading Great Expectations) ...")
    try:
        result = run_gate(stack.warehouse_dsn, layer.value, day, stack.settings.quality_dir)
    except DataQualityError as exc:
        _print(exc.result)
        raise typer.Exit(1) from exc
    _print(result)


def _print(result: GateResult) -> None:
    tables: dict[str, list[CheckOutcome]] = {}
    for outcome in result.outcomes:
        tables.setdefault(outcome.table, []).append(outcome)
    width = max([len("table"), *(len(t) for t in tables)])
    typer.echo(f"{'table':{width}}  {'checks':>6}  {'failed':>6}  status")
    for table, outcomes in tables.items():
        failed = sum(not o.success for o in outcomes)
        status = typer.style("pass", fg="green") if not failed else typer.style("FAIL", fg="red", bold=True)
        typer.echo(f"{table:{width}}  {len(outcomes):>6}  {failed:>6}  {status}")
    if result.failures:
        typer.echo("\nfailed expectations:")
        for outcome in result.failures:
            typer.echo(f"  - {outcome.line()}")
    typer.echo(f"\n{result.summary()}")
    typer.echo(f"Data Docs: {result.data_docs_path}")


def register(app: typer.Typer) -> None:
    app.add_typer(quality_app, name="quality")

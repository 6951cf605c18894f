"""``ltvfeed import KIND FILE`` and ``ltvfeed import-dir ROOT``: load shop exports into the warehouse's raw tables."""

from __future__ import annotations

from pathlib import Path

import typer

from ltvfeed.settings import get_settings
from ltvfeed.warehouse import RAW_ENTITIES


def import_cmd(
    kind: str = typer.Argument(..., help=f"What the file holds: {', '.join(RAW_ENTITIES)}."),
    file: Path = typer.Argument(..., help="A .csv (UTF-8, header row) or .parquet file."),
    column_map: list[str] = typer.Option(
        None, "--map", metavar="SRC=DST", help="Rename a file column to the expected one; repeatable."
    ),
    transaction_log: bool = typer.Option(
        False,
        "--transaction-log",
        help="orders only: a plain log of customer_id, order_date, amount[, quantity]; order ids are derived "
        "(same purchase, same id in overlapping exports) and quantity is ignored.",
    ),
) -> None:
    """Import one file into raw.KIND: bad rows are quarantined, known rows skipped, a re-run changes nothing."""
    from ltvfeed.infra.stack import up
    from ltvfeed.ingest import import_file
    from ltvfeed.ingest.plan import parse_column_map
    from ltvfeed.ingest.report import summary_lines

    mapping = parse_column_map(column_map)
    stack = up(get_settings())
    report = import_file(stack.warehouse_dsn, kind, file, column_map=mapping, transaction_log=transaction_log)
    typer.echo("\n".join(summary_lines(report)))


def import_dir_cmd(
    root: Path = typer.Argument(..., help=f"Folder with one sub-folder per kind ({', '.join(RAW_ENTITIES)})."),
) -> None:
    """Import every ROOT/<kind>/*.csv|*.parquet in dependency order; files imported before are skipped."""
    from ltvfeed.infra.stack import up
    from ltvfeed.ingest import import_directory
    from ltvfeed.ingest.report import summary_lines

    stack = up(get_settings())
    reports = import_directory(stack.warehouse_dsn, root)
    if not reports:
        typer.echo(f"no .csv or .parquet files under {root}/<kind>/")
    for report in reports:
        typer.echo("\n".join(summary_lines(report)))
    loaded = sum(r.rows_loaded for r in reports)
    quarantined = sum(r.rows_quarantined for r in reports)
    skipped = sum(r.already_imported for r in reports)
    typer.echo(
        f"{len(reports)} file(s): {loaded:,} rows loaded, {quarantined:,} quarantined, {skipped} already imported"
    )


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
    app.command("import-dir")(import_dir_cmd)

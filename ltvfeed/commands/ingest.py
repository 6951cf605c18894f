"""``ltvfeed import KIND FILE`` and ``ltvfeed import-dir ROOT``: load shop exports into the warehouse's raw tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ltvfeed.settings import get_settings
from ltvfeed.warehouse import RAW_ENTITIES

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack
    from ltvfeed.ingest import ImportReport

_PUSH_HELP = (
    "After importing orders or order lines, push the recent purchases of their users to the online feature "
    "store, so the feed API stops showing items bought since the last feed generation."
)


def push_purchases_online(stack: Stack, reports: list[ImportReport]) -> None:
    """Best effort, after the import is committed: a failed push loses nothing (the next materialisation loads
    the orders from the marts, and re-running the import pushes again), so it warns instead of failing."""
    from ltvfeed.features.recent_purchases import PURCHASE_KINDS, FeatureStoreNotApplied, push_imported_purchases

    if not any(r.kind in PURCHASE_KINDS for r in reports):
        return
    try:
        users = push_imported_purchases(stack, reports)
    except FeatureStoreNotApplied as exc:
        typer.echo(f"recent purchases not pushed online: {exc}; the import itself is complete", err=True)
        return
    except Exception as exc:  # Redis or registry trouble must not turn a committed import into a failure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(
            f"warning: recent purchases not pushed online ({first}); the import itself is complete, "
            "re-run it to push again",
            err=True,
        )
        return
    if users:
        typer.echo(f"recent purchases pushed online for {users:,} user(s)")


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
    push: bool = typer.Option(True, "--push-online/--no-push-online", help=_PUSH_HELP),
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
    if push:
        push_purchases_online(stack, [report])


def import_dir_cmd(
    root: Path = typer.Argument(..., help=f"Folder with one sub-folder per kind ({', '.join(RAW_ENTITIES)})."),
    push: bool = typer.Option(True, "--push-online/--no-push-online", help=_PUSH_HELP),
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
    if push:
        push_purchases_online(stack, reports)


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
    app.command("import-dir")(import_dir_cmd)

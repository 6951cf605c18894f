"""The ``ltvfeed`` command line: everything a DAG can do, runnable by hand."""

from __future__ import annotations

import sys
import warnings

import typer

from ltvfeed.commands import register
from ltvfeed.errors import UserError

app = typer.Typer(
    name="ltvfeed",
    help="Personalised product feeds ranked for long-term revenue.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
register(app)


def main() -> None:
    """Console entry point: actionable errors become one line on stderr and exit code 2."""
    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")
    try:
        app()
    except UserError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()

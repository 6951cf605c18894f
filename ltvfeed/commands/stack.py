"""``ltvfeed stack up|status|down``."""

from __future__ import annotations

import typer

from ltvfeed.settings import get_settings

stack_app = typer.Typer(help="Start, inspect and stop PostgreSQL + Redis (configured or embedded).")


@stack_app.command("up")
def up_cmd() -> None:
    """Connect to (or start embedded) PostgreSQL and Redis and create the databases."""
    from ltvfeed.infra.stack import up

    stack = up(get_settings())
    kind = lambda embedded: "embedded" if embedded else "configured"  # noqa: E731
    typer.echo(f"postgres  {kind(stack.pg_embedded):10}  {stack.pg_dsn}")
    typer.echo(f"redis     {kind(stack.redis_embedded):10}  {stack.redis_url}")
    typer.echo(f"warehouse {stack.warehouse_dsn}")
    typer.echo(f"mlflow db {stack.mlflow_dsn}")
    typer.echo(f"state     {stack.settings.state_dir}")


@stack_app.command("status")
def status_cmd() -> None:
    """Say what is up, where, and what is missing; exit 1 if anything is missing."""
    from ltvfeed.infra.stack import status

    rows = status(get_settings())
    for name, ok, detail in rows:
        typer.echo(f"{'ok  ' if ok else 'DOWN'}  {name:24} {detail}")
    raise typer.Exit(0 if all(ok for _, ok, _ in rows) else 1)


@stack_app.command("down")
def down_cmd() -> None:
    """Stop this state dir's `ltvfeed airflow standalone` and embedded servers (data is kept)."""
    from ltvfeed.infra.stack import down
    from ltvfeed.orchestration.standalone import stop_standalone

    settings = get_settings()
    airflow = ["airflow standalone"] if stop_standalone(settings) else []  # before the servers its tasks use
    stopped = airflow + down(settings)
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")

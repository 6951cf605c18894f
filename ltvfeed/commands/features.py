"""``ltvfeed features apply|materialize|get|serve|feast``: the Feast feature store on the running stack."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import typer

from ltvfeed.commands.options import date_option
from ltvfeed.settings import get_settings

features_app = typer.Typer(help="Feast feature store: register definitions, load Redis, read features, serve.")


@features_app.command("apply")
def apply_cmd() -> None:
    """Register feature_repo/'s entities, views and services (feast apply); the marts must exist."""
    from ltvfeed.orchestration.feature_tasks import apply_features

    result = apply_features(get_settings())
    typer.echo(f"project {result['project']}: {result['objects']} objects applied")
    for name in result["deleted"]:
        typer.echo(f"  removed {name}")


@features_app.command("materialize")
def materialize_cmd(
    end: str | None = typer.Option(
        None, "--end", help="Load snapshots up to this cutoff date YYYY-MM-DD (00:00 UTC). Default: now."
    ),
) -> None:
    """Load what each feature view gained since its last load into Redis (the first time: TTL before end)."""
    from ltvfeed.features import cutoff, materialize_incremental
    from ltvfeed.infra.stack import up

    until = datetime.now(UTC) if end is None else cutoff(date_option(end, "--end"))
    windows = materialize_incremental(up(get_settings()), until)
    for w in windows:
        span = f"{w.start.isoformat()} .. {w.end.isoformat()}" if w.start else "skipped (already loaded past end)"
        typer.echo(f"{w.view:28} {span}")


@features_app.command("get")
def get_cmd(
    ids: list[str] = typer.Argument(..., help="One or more ids of the service's entity (user ids, or item ids)."),
    service: str = typer.Option(
        "user_profile",
        "--service",
        "-s",
        help="Feature service. By user id: user_profile, ltv_model, ltv_scores, freshness; by item id: item_catalog.",
    ),
) -> None:
    """Print the online features of users (or items): one JSON object per id; null = not in the online store."""
    from ltvfeed.features.config import feature_store, import_feast_for_reads
    from ltvfeed.features.retrieval import OnlineFeatures
    from ltvfeed.infra.stack import running

    import_feast_for_reads()
    # the registry as applied (no apply, no definitions imported), on the running stack (nothing created)
    reader = OnlineFeatures(feature_store(running(get_settings()), create_schema=False), service)
    # columns, not a DataFrame: ints stay ints and missing values None
    columns = reader.columns(reader.join_key, ids)
    for i in range(len(ids)):
        typer.echo(json.dumps({name: values[i] for name, values in columns.items()}, default=str))


@features_app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 exposes it)."),
    port: int = typer.Option(6566, "--port", min=1, max=65535, help="TCP port."),
) -> None:
    """Run Feast's HTTP feature server (POST /get-online-features) on the stack's registry and Redis."""
    from ltvfeed.features.server import serve
    from ltvfeed.infra.stack import up

    stack = up(get_settings())
    typer.echo(f"feast feature server on http://{host}:{port} (POST /get-online-features); stop: Ctrl-C")
    raise typer.Exit(serve(stack, host, port))


@features_app.command(
    "feast", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False
)
def feast_cmd(ctx: typer.Context) -> None:
    """Run any feast CLI command on feature_repo/ with the stack's configuration, e.g. `feast plan`."""
    from ltvfeed.features import feast_cli
    from ltvfeed.infra.stack import up

    cmd, env = feast_cli(up(get_settings()), list(ctx.args) or ["--help"])
    raise typer.Exit(_run(cmd, env))


def _run(cmd: list[str], env: dict[str, str]) -> int:
    try:
        return subprocess.run(cmd, env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130


def register(app: typer.Typer) -> None:
    app.add_typer(features_app, name="features")

"""``ltvfeed models list|promote|rollback`` (the registry) and ``ltvfeed mlflow ui|status|stop`` (the server)."""

from __future__ import annotations

import typer

from ltvfeed.settings import get_settings

models_app = typer.Typer(help="Registered models: versions, champion/challenger aliases, promotion, rollback.")
mlflow_app = typer.Typer(help="The MLflow tracking server (UI + REST API) over this stack's backend database.")

_KEY_METRICS = ("normalized_gini", "spearman")


def _stack():
    from ltvfeed.infra.stack import up

    return up(get_settings())


def _metrics_text(metrics: dict[str, float]) -> str:
    keys = [k for k in _KEY_METRICS if k in metrics] + sorted(k for k in metrics if k not in _KEY_METRICS)
    return " ".join(f"{k}={metrics[k]:.4f}" for k in keys[:4])


@models_app.command("list")
def list_cmd(
    name: str = typer.Argument(None, help="Model name (e.g. ltv); omitted: every registered model"),
    reasons: bool = typer.Option(False, "--reasons", help="Also print each version's promotion reason"),
) -> None:
    """Registered models, or one model's versions with aliases, holdout metrics and decisions."""
    from ltvfeed.training.registry import list_models, list_versions

    stack = _stack()
    if name is None:
        models = list_models(stack)
        if not models:
            typer.echo("no registered models yet")
        for model, aliases in models:
            shown = ", ".join(f"{alias}=v{version}" for alias, version in sorted(aliases.items())) or "no aliases"
            typer.echo(f"{model:24} {shown}")
        return
    from ltvfeed.training.ltv_scoring import served_scoring

    served = served_scoring(stack, name)
    if served.stale:  # e.g. the alias moved in the MLflow UI
        typer.secho(f"warning: {served.warning()}", fg="yellow", err=True)
    for v in list_versions(stack, name):
        aliases = ",".join(v.aliases) or "-"
        typer.echo(
            f"v{v.version:<4} {aliases:20} {v.created:%Y-%m-%d %H:%M}  holdout={v.holdout_id or '-'}  "
            f"{_metrics_text(v.metrics)}  {v.decision or ''}"
        )
        if reasons and v.reason:
            typer.echo(f"       {v.reason}")


_RESCORE = typer.Option(
    True,
    "--rescore/--no-rescore",
    help="ltv: re-score the snapshot apps read with the new champion and load it into Redis (else say what to run).",
)


def _publish(stack, name: str, rescore: bool) -> None:
    """Make a change of champion reach what apps read, or say exactly what does."""
    from ltvfeed.serving.propensity_sources import PROPENSITY_MODEL
    from ltvfeed.training.ltv_scoring import republish_champion, served_scoring

    served = served_scoring(stack, name)
    if served.as_of is not None:  # a model whose scores are in marts.user_ltv_predictions and Redis
        if not served.stale:
            typer.echo(f"apps already read v{served.version}'s scores of snapshot {served.as_of}")
        elif rescore:
            result = republish_champion(stack, name, echo=typer.echo)
            assert result is not None
            typer.echo(f"apps now read v{result.version}'s scores of snapshot {result.as_of} ({result.rows} users)")
        else:
            typer.echo(served.warning())
        return
    if name == PROPENSITY_MODEL:  # feeds in Redis were ranked by the previous champion
        typer.echo("feeds in Redis were ranked by the previous champion: regenerate them with `ltvfeed feeds generate`")
        return
    typer.echo(f"nothing ltvfeed publishes was made by {name!r}; the new champion is used from its next run")


@models_app.command("promote")
def promote_cmd(
    name: str = typer.Argument(..., help="Model name"),
    version: str = typer.Argument(..., help="Version to make champion"),
    reason: str = typer.Option("promoted by hand with ltvfeed models promote", help="Why (recorded as a tag)"),
    rescore: bool = _RESCORE,
) -> None:
    """Make VERSION the champion now, whatever its metrics (recorded as a promotion by hand), and republish."""
    from ltvfeed.training.registry import current_champion, promote

    stack = _stack()
    before = current_champion(stack, name)
    promote(stack, name, version, reason)
    typer.echo(f"{name}: champion v{before or '-'} -> v{version}")
    _publish(stack, name, rescore)


@models_app.command("rollback")
def rollback_cmd(
    name: str = typer.Argument(..., help="Model name"),
    reason: str = typer.Option(None, help="Why (recorded as a tag)"),
    rescore: bool = _RESCORE,
) -> None:
    """Give the champion alias back to the previous champion, and republish what apps read."""
    from ltvfeed.training.registry import current_champion, rollback

    stack = _stack()
    before = current_champion(stack, name)
    after = rollback(stack, name, reason)
    typer.echo(f"{name}: champion v{before} -> v{after}")
    _publish(stack, name, rescore)


@mlflow_app.command("ui")
def ui_cmd() -> None:
    """Start the tracking server in the background (if not running) and print its URL."""
    from ltvfeed.infra.mlflow_server import start_mlflow_server
    from ltvfeed.infra.tracking import artifact_root

    stack = _stack()
    url = start_mlflow_server(stack)
    typer.echo(url)
    typer.echo(f"backend database {stack.settings.mlflow_db}, artifacts {artifact_root(stack.settings)}", err=True)
    typer.echo("stop it with: ltvfeed mlflow stop", err=True)


@mlflow_app.command("status")
def status_cmd() -> None:
    """Say whether the tracking server runs; exit 1 if not."""
    from ltvfeed.infra.mlflow_server import mlflow_server_status

    s = mlflow_server_status(get_settings())
    if s.running:
        typer.echo(f"{'ok' if s.healthy else 'STARTING'}  {s.url}  pid {s.pid}  log {s.log}")
    else:
        typer.echo("DOWN  not running (ltvfeed mlflow ui)")
    raise typer.Exit(0 if s.running else 1)


@mlflow_app.command("stop")
def stop_cmd() -> None:
    """Stop the tracking server (runs and models stay in the database)."""
    from ltvfeed.infra.mlflow_server import stop_mlflow_server

    typer.echo("stopped" if stop_mlflow_server(get_settings()) else "was not running")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
    app.add_typer(mlflow_app, name="mlflow")

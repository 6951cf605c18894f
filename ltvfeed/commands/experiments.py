"""``ltvfeed experiments create|list|start|ramp|stop|report``: A/B experiments on the feed."""

from __future__ import annotations

from pathlib import Path

import typer

from ltvfeed.errors import UserError
from ltvfeed.settings import get_settings

experiments_app = typer.Typer(help="A/B experiments on the feed: configuration, life cycle and reports.")


def _stack():
    from ltvfeed.infra.stack import up

    return up(get_settings())


def _publish(stack) -> int:
    """The running set to Redis, where the feed API reads it (no database read per request)."""
    import redis

    from ltvfeed.experiments.registry import publish_running

    return publish_running(stack.warehouse_dsn, redis.Redis.from_url(stack.redis_url), stack.settings.redis_prefix)


def _parse_arms(text: str):
    from pydantic import ValidationError

    from ltvfeed.experiments.registry import FeedArm

    arms = []
    for part in text.split(","):
        try:
            name_feed, _, weight = part.partition("=")
            name, _, feed = name_feed.partition(":")
            arms.append(FeedArm(name=name.strip(), feed=(feed or "classic").strip(), weight=float(weight or 1)))
        except ValidationError as exc:
            raise UserError(f"--arms: {part!r}: {exc.errors()[0]['msg']}") from exc
        except ValueError as exc:
            raise UserError(f"--arms: {part!r} is not NAME:FEED=WEIGHT") from exc
    return arms


def _parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError as exc:
        raise UserError(f"--namespace-range: {text!r} is not START:END, e.g. 0:0.5") from exc
    return lo, hi


@experiments_app.command("create")
def create_cmd(
    name: str = typer.Argument(..., help="Experiment name"),
    arms: str = typer.Option(
        "control:classic=1,treatment:personalised=1", "--arms", help="NAME:FEED=WEIGHT,... (the first is control)"
    ),
    traffic: float = typer.Option(0.1, "--traffic", min=0, max=1, help="Share of users in the experiment"),
    primary: str = typer.Option("conversion_rate", "--primary", help="Primary metric"),
    secondary: str = typer.Option("ctr,average_order_value", "--secondary", help="Secondary metrics, comma-separated"),
    guardrails: str = typer.Option("revenue_per_user", "--guardrails", help="Guardrail metrics, comma-separated"),
    ltv_window_days: int = typer.Option(180, "--ltv-window-days", help="Long window for realised LTV"),
    namespace_range: str = typer.Option("0:1", "--namespace-range", help="START:END of the feed namespace"),
    allow_overlap: bool = typer.Option(False, "--allow-overlap", help="May share users with another experiment"),
    salt: str = typer.Option(None, "--salt", help="Assignment salt (default: random)"),
) -> None:
    """Register a draft experiment."""
    from pydantic import ValidationError

    from ltvfeed.experiments import registry

    try:
        experiment = registry.Experiment(
            name=name,
            salt=salt or registry.new_salt(),
            arms=_parse_arms(arms),
            traffic_share=traffic,
            primary_metric=primary,
            secondary_metrics=[m for m in secondary.split(",") if m],
            guardrail_metrics=[m for m in guardrails.split(",") if m],
            ltv_window_days=ltv_window_days,
            namespace_range=_parse_range(namespace_range),
            allow_overlap=allow_overlap,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"experiment {name!r}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
    stack = _stack()
    registry.create(stack.warehouse_dsn, experiment)
    typer.echo(f"experiment {name} created (draft): {len(experiment.arms)} arms, traffic {traffic:.0%}")


@experiments_app.command("list")
def list_cmd() -> None:
    """Experiments with status, traffic and arms."""
    from ltvfeed.experiments import registry

    records = registry.list_all(_stack().warehouse_dsn)
    if not records:
        typer.echo("no experiments yet (ltvfeed experiments create NAME)")
    for r in records:
        e = r.experiment
        arms = ",".join(f"{a.name}:{a.feed}={a.weight:g}" for a in e.arms)
        typer.echo(f"{e.name:24} {r.status:8} traffic {e.traffic_share:>4.0%}  {arms}  primary {e.primary_metric}")


@experiments_app.command("start")
def start_cmd(name: str = typer.Argument(..., help="Experiment name")) -> None:
    """Start a draft experiment (refused if it overlaps a running one); the feed API picks it up."""
    from ltvfeed.experiments import registry

    stack = _stack()
    registry.start(stack.warehouse_dsn, name)
    typer.echo(f"experiment {name} running; {_publish(stack)} running experiment(s) published to the feed API")


@experiments_app.command("ramp")
def ramp_cmd(
    name: str = typer.Argument(..., help="Experiment name"),
    traffic: float = typer.Option(..., "--traffic", min=0, max=1, help="New share of users"),
) -> None:
    """Raise the traffic share: adds users, reassigns nobody."""
    from ltvfeed.experiments import registry

    stack = _stack()
    registry.ramp(stack.warehouse_dsn, name, traffic)
    _publish(stack)
    typer.echo(f"experiment {name}: traffic {traffic:.0%}")


@experiments_app.command("stop")
def stop_cmd(name: str = typer.Argument(..., help="Experiment name")) -> None:
    """Stop a running experiment: everyone gets the control feed again."""
    from ltvfeed.experiments import registry

    stack = _stack()
    registry.stop(stack.warehouse_dsn, name)
    _publish(stack)
    typer.echo(f"experiment {name} stopped")


@experiments_app.command("report")
def report_cmd(
    name: str = typer.Argument(..., help="Experiment name"),
    metrics_csv: Path = typer.Option(
        None,
        "--metrics",
        help="Per-user metrics CSV (columns of ltvfeed.experiments.analysis.USER_COLUMNS) instead of the dbt mart",
    ),
    out: Path = typer.Option(None, "--out", help="HTML file (default: <state_dir>/experiments/NAME.html)"),
    fixed_horizon: bool = typer.Option(False, "--fixed-horizon", help="Classic intervals (only at the planned end)"),
) -> None:
    """Write the HTML report (verdict, SRM, every metric with intervals, cumulative lift, LTV surrogate) from the
    dbt mart experiment_user_metrics (or --metrics), and log it to MLflow (experiment ab_reports)."""
    from ltvfeed.experiments.readout import report

    readout = report(_stack(), name, metrics_csv=metrics_csv, out=out, fixed_horizon=fixed_horizon)
    typer.echo(f"{readout.analysis.verdict}\nreport: {readout.path}\nmlflow run: {readout.mlflow_run_id}")


@experiments_app.command("simulate")
def simulate_cmd(
    users: int = typer.Option(5000, "--users", help="Simulated users"),
    items: int = typer.Option(300, "--items", help="Items in the catalogue"),
    history_days: int = typer.Option(180, "--history-days", help="The shop's past before the experiment, days"),
    days: int = typer.Option(90, "--days", help="Simulated experiment days (ending yesterday)"),
    seed: int = typer.Option(7, "--seed", help="Random seed: same options, same shop and same responses"),
    regenerate_every: int = typer.Option(
        30, "--regenerate-every", help="Days between feed generations during the run (0: never)"
    ),
    arms: str = typer.Option(
        "control:classic=1,treatment:personalised=1", "--arms", help="NAME:FEED=WEIGHT,... (the first is control)"
    ),
    name: str = typer.Option(None, "--name", help="Experiment name (default: closed-loop-seedS)"),
) -> None:
    """A whole simulated experiment, closed loop: a simulated shop whose users respond to the feeds the feed API
    serves them (through the real assignment, exposure log, collector, dbt metrics and stats engine), in its own
    warehouse database and Redis prefix (emptied first). Prints every metric's lift with its interval and the
    HTML report's path."""
    from ltvfeed.experiments.closed_loop import ClosedLoopConfig, run_closed_loop
    from ltvfeed.experiments.closed_loop_shop import fresh_stack
    from ltvfeed.experiments.lift_table import format_lift_table

    config = ClosedLoopConfig(
        users=users,
        items=items,
        history_days=history_days,
        days=days,
        seed=seed,
        regenerate_every=regenerate_every,
        name=name,
        arms=tuple(_parse_arms(arms)),
    )
    settings = get_settings()
    result = run_closed_loop(fresh_stack(settings), config, settings.state_dir / "closed_loop", echo=typer.echo)
    c = result.counts
    typer.echo(
        f"\n{c.visits:,} visits, {c.feeds_served:,} feeds served, {c.exposures_logged:,} exposures logged "
        f"({c.exposures_dropped} dropped), {c.events_emitted:,} events emitted, {c.events_stored:,} stored "
        f"({c.events_duplicate} duplicate, {c.events_rejected} rejected), {len(c.generations)} generation(s); "
        f"simulated {result.start} to {result.end}, "
        f"{result.seconds:.0f} s\n"
    )
    typer.echo(format_lift_table(result.readout.analysis))
    typer.echo(f"report: {result.readout.path}\nmlflow run: {result.readout.mlflow_run_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(experiments_app, name="experiments")

"""``ltvfeed simulate``: a synthetic shop written as Parquet in the landing layout, optionally loaded."""

from __future__ import annotations

from pathlib import Path

import typer

from ltvfeed.settings import get_settings


def simulate_cmd(
    users: int = typer.Option(10_000, "--users", help="Number of users."),
    items: int = typer.Option(2_000, "--items", help="Number of items in the catalogue."),
    days: int = typer.Option(180, "--days", help="Length of the observed window in days."),
    seed: int = typer.Option(42, "--seed", help="Random seed: same seed and options, same data."),
    end_date: str | None = typer.Option(
        None, "--end-date", help="End of the observed window (exclusive), YYYY-MM-DD. Default: today (UTC)."
    ),
    horizons: str = typer.Option("90,180,365", "--horizons", help="Ground-truth horizons in days, comma-separated."),
    out: Path | None = typer.Option(None, "--out", help="Output folder. Default: the landing dir of the settings."),
    load: bool = typer.Option(False, "--load", help="Also load into the running stack's warehouse."),
    chunk_users: int = typer.Option(
        5_000, "--chunk-users", help="Users simulated together: bounds memory; part of what a seed reproduces."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Simulate a shop with hidden user traits; write users, items, orders, order_items, events, preferences
    and the hidden ground truth (future spend, traits) as Parquet."""
    from ltvfeed.simulator import SimulationConfig, parse_end_date, parse_horizons, simulate_to_directory

    settings = get_settings()
    config = SimulationConfig(
        n_users=users,
        n_items=items,
        days=days,
        seed=seed,
        end_date=parse_end_date(end_date),
        horizons=parse_horizons(horizons),
        chunk_users=chunk_users,
    )
    out_dir = out or settings.landing_dir
    summary = simulate_to_directory(config, out_dir, progress=progress)
    typer.echo(
        f"simulated {config.start:%Y-%m-%d} to {config.end:%Y-%m-%d} (exclusive), seed {seed}: "
        f"wrote {out_dir} in {summary.seconds:.1f} s"
    )
    for kind, rows in summary.rows.items():
        typer.echo(f"  {kind:14} {rows:>12,} rows  {len(summary.files[kind])} file(s)")
    active = summary.users_with_events
    per_active = summary.rows["events"] / active if active else 0.0
    typer.echo(f"  users with events in the window: {active:,} ({per_active:.1f} events each)")
    for horizon in config.horizons:
        share = summary.share_with_future_spend(horizon)
        typer.echo(f"  users with future spend within {horizon} days: {share:.1%}")
    if load:
        from ltvfeed.infra.stack import up
        from ltvfeed.simulator.load import load_into_warehouse

        stack = up(settings)
        reports, truth = load_into_warehouse(stack.warehouse_dsn, out_dir)
        from ltvfeed.ingest.report import summary_lines

        for report in reports:
            typer.echo("\n".join(summary_lines(report)))
        typer.echo(f"  ground truth: {truth['future_spend']:,} future_spend rows, {truth['user_traits']:,} user_traits")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)

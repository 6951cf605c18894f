"""``ltvfeed propensity train``: train, evaluate out of time, register and promote the purchase-propensity model."""

from __future__ import annotations

import typer

from ltvfeed.commands.options import date_option
from ltvfeed.settings import get_settings

propensity_app = typer.Typer(help="Purchase propensity: P(user buys item within the horizon), for feed ranking.")


@propensity_app.command("train")
def train_cmd(
    cutoff: str = typer.Option(
        ..., "--cutoff", help="Training cutoff T1 YYYY-MM-DD: features as of T1, purchases in [T1, T1 + horizon)."
    ),
    eval_cutoff: str = typer.Option(..., "--eval-cutoff", help="Out-of-time evaluation cutoff T2 >= T1 + horizon."),
    horizon_days: int = typer.Option(30, "--horizon-days", help="Purchase window after each cutoff, in days."),
    seed: int = typer.Option(0, "--seed", help="Seed of sampling, initialisation and shuffling."),
    max_epochs: int = typer.Option(40, "--max-epochs", help="Upper bound; early stopping usually ends sooner."),
    patience: int = typer.Option(4, "--patience", help="Epochs without validation improvement before stopping."),
    negatives: int = typer.Option(4, "--negatives", help="Sampled negatives per bought (user, item) pair."),
    user_features: str = typer.Option(
        "feast", "--user-features", help="'feast' (training_frame, needs `ltvfeed features apply`) or 'marts'."
    ),
    ltv_model: str = typer.Option(
        "ltv",
        "--ltv-model",
        help="LTV model whose predictions (marts.user_ltv_predictions) become user features "
        "when the cutoff was scored; '' = none.",
    ),
) -> None:
    """Train on --cutoff, evaluate on --eval-cutoff against popularity and commercial_score, log to MLflow,
    register as purchase_propensity and promote it to champion if it beats the current one."""
    from ltvfeed.infra.stack import up
    from ltvfeed.training.propensity.config import MODEL_NAME, PropensityConfig
    from ltvfeed.training.propensity.train import format_metrics, train_propensity

    cfg = PropensityConfig(
        seed=seed,
        max_epochs=max_epochs,
        patience=patience,
        negatives_per_positive=negatives,
        user_features=user_features,  # type: ignore[arg-type]  # checked by PropensityConfig
        ltv_model=ltv_model or None,
    )
    result = train_propensity(
        up(get_settings()),
        date_option(cutoff, "--cutoff"),
        date_option(eval_cutoff, "--eval-cutoff"),
        horizon_days,
        cfg,
    )
    typer.echo(format_metrics(result.metrics))
    typer.echo(f"holdout: {result.holdout_id}" + ("" if result.eval_window_complete else " (window not complete)"))
    verdict = "promoted to champion" if result.promoted else "not promoted (stays challenger)"
    typer.echo(f"{MODEL_NAME} v{result.version}: {verdict}: {result.reason}")
    typer.echo(f"run {result.run_id}")


@propensity_app.command("retrain")
def retrain_cmd(
    as_of: str = typer.Option(..., "--as-of", help="Cutoff D YYYY-MM-DD: train on D - 2H, evaluate on D - H."),
    horizon_days: int = typer.Option(30, "--horizon-days", help="Purchase window H, in days."),
    seed: int = typer.Option(0, "--seed", help="Seed of sampling, initialisation and shuffling."),
    max_epochs: int = typer.Option(40, "--max-epochs", help="Upper bound; early stopping usually ends sooner."),
) -> None:
    """What one propensity_retrain DAG run does: build missing snapshots, train, register, promotion gate."""
    from ltvfeed.orchestration.ltv_tasks import promotion_gate
    from ltvfeed.orchestration.propensity_tasks import prepare_propensity_data, train_and_register
    from ltvfeed.training.propensity.config import MODEL_NAME

    settings = get_settings()
    params = {"propensity_horizon_days": horizon_days, "seed": seed, "max_epochs": max_epochs}
    prepared = prepare_propensity_data(settings, date_option(as_of, "--as-of"), params)
    typer.echo(f"cutoffs: train {prepared['cutoff']}, evaluate {prepared['eval_cutoff']} (H = {horizon_days} d)")
    trained = train_and_register(settings, prepared, params)
    gate = promotion_gate(settings, trained, MODEL_NAME)
    typer.echo(f"{MODEL_NAME} v{gate['version']} {gate['decision']}: {gate['reason']}; champion v{gate['champion']}")


def register(app: typer.Typer) -> None:
    app.add_typer(propensity_app, name="propensity")

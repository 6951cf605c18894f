"""``ltvfeed ltv train|score|predict|backtest``: the LTV model by hand, exactly as the ``ltv_retrain`` DAG runs it
(train, score), ``predict`` for a shop that has nothing but a transaction log, and ``backtest``: rolling-origin
backtests of the network against naive and BG/NBD + Gamma-Gamma on a shop's own log (a file or the warehouse),
logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import typer

from ltvfeed.commands.options import date_option
from ltvfeed.cutoff import DEFAULT_HORIZON_DAYS
from ltvfeed.errors import UserError
from ltvfeed.settings import get_settings

ltv_app = typer.Typer(help="LTV model: train and register, score customers, predict from a transaction log.")


def _stack():
    from ltvfeed.infra.stack import up

    return up(get_settings())


@ltv_app.command("train")
def train_cmd(
    cutoff: str = typer.Option(..., "--cutoff", help="Latest training cutoff YYYY-MM-DD (features before it)."),
    horizon_days: int = typer.Option(
        DEFAULT_HORIZON_DAYS, "--horizon-days", min=1, help="Predict revenue over this many days."
    ),
    holdout_cutoff: str | None = typer.Option(
        None, "--holdout-cutoff", help="Later cutoff to evaluate on (labels must be complete). Default: cutoff + H."
    ),
    train_cutoffs: int = typer.Option(1, "--train-cutoffs", min=1, help="Training cutoffs (the training window)."),
    step_days: int = typer.Option(30, "--cutoff-step-days", min=1, help="Days between training cutoffs."),
    exclude: list[str] = typer.Option([], "--exclude-feature", help="Leave this ltv_model feature out (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Training seed (runs are reproducible for a seed)."),
) -> None:
    """Train the ZILN network and both baselines, evaluate on the holdout, log to MLflow, register `ltv`
    (champion only when it beats the current one on the same holdout)."""
    from ltvfeed.training.fit import TrainConfig
    from ltvfeed.training.ltv_data import plan_for_cutoff
    from ltvfeed.training.ltv_run import LtvRunConfig, train_ltv

    plan = plan_for_cutoff(
        date_option(cutoff, "--cutoff"),
        horizon_days,
        train_cutoffs,
        step_days,
        date_option(holdout_cutoff, "--holdout-cutoff"),
    )
    config = LtvRunConfig(train=TrainConfig(seed=seed), exclude_features=tuple(exclude))
    result = train_ltv(_stack(), plan, config, echo=typer.echo)
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        typer.echo(result.metrics.to_string(float_format=lambda v: f"{v:.4f}"))
    state = "champion" if result.promoted else "challenger (not promoted)"
    typer.echo(f"ltv v{result.version}: {state} - {result.reason}\nMLflow run {result.run_id}")


@ltv_app.command("score")
def score_cmd(
    as_of: str | None = typer.Option(None, "--as-of", help="Snapshot to score YYYY-MM-DD. Default: the newest."),
    online: bool = typer.Option(True, "--online/--no-online", help="Also load the predictions into Redis (Feast)."),
) -> None:
    """Score every customer of a snapshot with models:/ltv@champion into marts.user_ltv_predictions."""
    from ltvfeed.training.ltv_scoring import materialize_predictions, score_snapshot

    stack = _stack()
    result = score_snapshot(stack, date_option(as_of, "--as-of"), echo=typer.echo)
    typer.echo(
        f"{result.rows} customers of {result.as_of} scored by ltv v{result.version} (H={result.horizon_days} d, "
        f"revision {result.revision}, {result.users_per_second:,.0f} users/s)"
    )
    if online:
        loaded = materialize_predictions(stack, result.as_of)
        typer.echo(f"online: {loaded['rows']} customers in Feast view {loaded['view']}")


@ltv_app.command("predict")
def predict_cmd(
    out: Path = typer.Option(..., "--out", help="CSV to write: customer_id,predicted_ltv,prob_return."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Predict from this date YYYY-MM-DD, using only data before it. Default: data end."
    ),
    horizon_days: int = typer.Option(
        DEFAULT_HORIZON_DAYS, "--horizon-days", min=1, help="Predict revenue over this many days."
    ),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
) -> None:
    """Learn from the imported transaction log alone and predict every customer's value (no Airflow/MLflow)."""
    from ltvfeed.training.fit import TrainConfig
    from ltvfeed.training.ltv_predict import predict_customers, write_csv

    if not out.parent.is_dir():  # before minutes of work, not after
        raise UserError(f"the folder of --out does not exist: {out.parent}")
    frame, plan = predict_customers(
        _stack(), date_option(as_of, "--as-of"), horizon_days, config=TrainConfig(seed=seed), echo=typer.echo
    )
    write_csv(frame, out)
    typer.echo(f"{len(frame)} customers -> {out} ({plan.describe()})")


@ltv_app.command("backtest")
def backtest_cmd(
    log_file: Path | None = typer.Argument(
        None, help="CSV transaction log: customer_id,order_date,amount (header row). Or --warehouse."
    ),
    warehouse: bool = typer.Option(False, "--warehouse", help="Backtest the warehouse's orders instead of a file."),
    cutoffs: str = typer.Option(..., "--cutoffs", help="Origins YYYY-MM-DD,YYYY-MM-DD,... (each needs H days after)."),
    horizon_days: int = typer.Option(
        DEFAULT_HORIZON_DAYS, "--horizon-days", min=1, help="Predict revenue over this many days."
    ),
    out: Path = typer.Option(Path("ltv-backtest"), "--out", help="Folder for backtest.html and backtest.csv."),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
    mlflow: bool = typer.Option(
        True, "--mlflow/--no-mlflow", help="Log the backtest as a run of MLflow experiment ltv_backtest."
    ),
) -> None:
    """Network vs naive vs BG/NBD + Gamma-Gamma at each cutoff: Spearman, Gini, top-decile capture, AUC, total
    error, VWDE (printed, saved as HTML with gain and calibration charts, and logged to MLflow)."""
    import pandas as pd

    from ltvfeed.training.fit import TrainConfig
    from ltvfeed.training.ltv_backtest import backtest, read_log, summary_table, warehouse_orders, write_report

    if (log_file is None) == (not warehouse):
        raise UserError("give either a transaction log file or --warehouse, not both or neither")
    days = [date_option(part.strip(), "--cutoffs") for part in cutoffs.split(",") if part.strip()]
    if not out.parent.is_dir():
        raise UserError(f"the folder of --out does not exist: {out.parent}")
    if log_file is not None:
        orders, source = read_log(log_file), str(log_file.resolve())
        stack = _stack() if mlflow else None  # before minutes of work, not after
    else:
        stack = _stack()
        orders, source = warehouse_orders(stack.warehouse_dsn), "warehouse"
    folds = backtest(orders, days, horizon_days, TrainConfig(seed=seed), echo=typer.echo)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        typer.echo(summary_table(folds).to_string(float_format=lambda v: f"{v:.4f}"))
    typer.echo(f"report: {write_report(folds, out)}")
    if stack is not None and mlflow:
        from ltvfeed.training.ltv_backtest_tracking import EXPERIMENT, log_backtest

        run = log_backtest(stack, folds, out, source, seed, orders["user_id"].nunique())
        typer.echo(f"MLflow run {run.run_id} in experiment {EXPERIMENT} (artifacts: {run.artifact_uri})")


def register(app: typer.Typer) -> None:
    app.add_typer(ltv_app, name="ltv")

"""Rolling-origin backtests of LTV on a shop's own transaction log: how a shop decides to trust the network before
it switches anything on.

For each cutoff D and horizon H: the network and both baselines (naive, BG/NBD + Gamma-Gamma) are fitted exactly as
a training run fits them (:func:`ltvfeed.training.ltv_run.fit_models`) where ``ltvfeed ltv predict --as-of D``
would learn (:func:`fold_plan`): customers described at D - H with their revenue in [D - H, D) as label (and,
when the log allows, at D - H - s, where the network's members learn while D - H calibrates them out of time);
on a log too short for that, the history before D split in half and the labels scaled to H, as predict does.
Then every customer described at D is scored and judged against the revenue of [D, D + H). Only orders before
D + H are read for a fold, and only orders before D reach the models. Features follow the ``user_features``
mart's definitions (:func:`ltvfeed.training.benchmark.user_features_from_shop`); a transaction log has no
engagement, demographics or preferences, so an RFM/tenure model remains, as in ``ltvfeed ltv predict``.

The result is one row per (cutoff, model) with the ranking metrics (Spearman, normalized Gini, top-decile capture,
AUC of P(return)) and the calibration bar (total error, VWDE, decile MAPE over valued deciles), side by side.
The orders come from a log file (:func:`read_log`) or a shop's warehouse (:func:`warehouse_orders`), as the same
frame; :mod:`ltvfeed.training.ltv_backtest_tracking` logs a backtest to MLflow.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.training.fit import TrainConfig

if TYPE_CHECKING:
    from ltvfeed.training.ltv_predict import PredictPlan

log = logging.getLogger(__name__)

LOG_COLUMNS = ("customer_id", "order_date", "amount")
REPORT_METRICS = (
    "spearman",
    "normalized_gini",
    "top_decile_capture",
    "auc_buys_again",
    "total_error",
    "vwde",
    "decile_mape_valued",
)


@dataclass
class BacktestFold:
    cutoff: date
    horizon_days: int
    n_train: int
    n_holdout: int
    metrics: pd.DataFrame  # rows: models; columns: metrics
    y: np.ndarray  # realised revenue of the holdout customers in [cutoff, cutoff + H)
    predictions: dict[str, pd.DataFrame]


def read_log(path: str | Path) -> pd.DataFrame:
    """A CSV transaction log (customer_id, order_date, amount; more columns ignored) as orders: user_id,
    ordered_at (UTC), amount. Bad input is a one-line error naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"transaction log not found: {path}")
    try:
        raw = pd.read_csv(path, dtype={"customer_id": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    return orders_from_log(raw, str(path))


def orders_from_log(raw: pd.DataFrame, source: str = "the log") -> pd.DataFrame:
    missing = [c for c in LOG_COLUMNS if c not in raw.columns]
    if missing:
        raise UserError(f"{source} lacks column(s) {', '.join(missing)} (needs {', '.join(LOG_COLUMNS)})")
    ordered_at = pd.to_datetime(raw["order_date"], errors="coerce", utc=True)
    amount = pd.to_numeric(raw["amount"], errors="coerce")
    bad = ordered_at.isna() | amount.isna() | raw["customer_id"].isna() | (amount < 0)
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(
            f"{source}: {int(bad.sum())} row(s) with a missing customer_id, an unreadable order_date or a missing "
            f"or negative amount (first: data row {first + 1})"
        )
    if raw.empty:
        raise UserError(f"{source} has no orders")
    return pd.DataFrame(
        {"user_id": raw["customer_id"].astype(str), "ordered_at": ordered_at, "amount": amount.astype("float64")}
    )


def warehouse_orders(dsn: str) -> pd.DataFrame:
    """The warehouse's raw orders as the same orders frame a transaction log gives (:func:`orders_from_log`), so
    a shop's imported log and the log file backtest identically."""
    from ltvfeed.warehouse.ltv_reads import read_orders

    orders = read_orders(dsn)
    if orders.empty:
        raise UserError(
            "the warehouse has no orders: import a transaction log first (ltvfeed import orders FILE --transaction-log)"
        )
    return orders


def features_at(orders: pd.DataFrame, cutoff: date) -> pd.DataFrame:
    """Every customer with an order before ``cutoff``, described by the mart's order features at ``cutoff``."""
    from ltvfeed.training.benchmark import user_features_from_shop

    end = pd.Timestamp(cutoff, tz="UTC")
    before = orders[orders["ordered_at"] < end]
    ids = before["user_id"].unique()
    users = pd.DataFrame(
        {
            "user_id": ids,
            "signup_at": pd.Series(pd.NaT, index=range(len(ids)), dtype="datetime64[ns, UTC]"),
            "country": None,
            "gender": None,
            "birth_year": np.nan,
            "acquisition_partner_id": None,
        }
    )
    empty_events = pd.DataFrame(
        {
            "user_id": pd.Series(dtype=object),
            "occurred_at": pd.Series(dtype="datetime64[ns, UTC]"),
            "event_type": pd.Series(dtype=object),
            "item_id": pd.Series(dtype=object),
            "dwell_seconds": pd.Series(dtype="float64"),
        }
    )
    shop = SimpleNamespace(
        orders=before,
        users=users,
        events=empty_events,
        items=pd.DataFrame({"item_id": pd.Series(dtype=object), "category": pd.Series(dtype=object)}),
        preferences=pd.DataFrame(
            {
                "user_id": pd.Series(dtype=object),
                "created_at": pd.Series(dtype="datetime64[ns, UTC]"),
                "kind": pd.Series(dtype=object),
                "category": pd.Series(dtype=object),
            }
        ),
        config=SimpleNamespace(end=end.to_pydatetime()),
    )
    return user_features_from_shop(shop)


def revenue_in(orders: pd.DataFrame, user_ids: pd.Series, start: date, days: int) -> np.ndarray:
    """Each user's revenue in [start, start + days)."""
    lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(start + timedelta(days=days), tz="UTC")
    window = orders[(orders["ordered_at"] >= lo) & (orders["ordered_at"] < hi)]
    revenue = window.groupby("user_id")["amount"].sum()
    return revenue.reindex(user_ids.to_numpy()).fillna(0.0).to_numpy(np.float64)


def fold_plan(cutoff: date, horizon_days: int, first_day: date) -> PredictPlan:
    """Where a fold learns: exactly where ``ltvfeed ltv predict --as-of cutoff`` would (:func:`plan_predict`), so
    that a backtest judges the model a shop would get. With enough history before D - H (see
    :func:`plan_predict`): features at D - H, labels [D - H, D), the members at D - H - s and the calibration
    out of time at D - H; with less, the history is split in half and the labels scaled to H (the plan says so)."""
    from ltvfeed.training.ltv_predict import plan_predict

    return plan_predict(cutoff, horizon_days, first_day)


def backtest_fold(
    orders: pd.DataFrame, cutoff: date, horizon_days: int, config: TrainConfig, plan: PredictPlan | None = None
) -> BacktestFold:
    """One origin: fit where ``plan`` says (default :func:`fold_plan`), judge at cutoff (see the module doc)."""
    from ltvfeed.training.ltv_data import ltv_feature_schema
    from ltvfeed.training.ltv_predict import extrapolate_prob
    from ltvfeed.training.ltv_run import NETWORK, evaluate_all, fit_models, predict_all

    first = orders["ordered_at"].min().date()
    last = orders["ordered_at"].max().date()
    if cutoff <= first:
        raise UserError(f"cutoff {cutoff}: the log starts on {first}; use a later cutoff")
    if cutoff + timedelta(days=horizon_days) > last + timedelta(days=1):
        raise UserError(
            f"cutoff {cutoff}: its {horizon_days}-day future ends on {cutoff + timedelta(days=horizon_days - 1)}, "
            f"after the log's last order day {last}; use a cutoff <= {last + timedelta(days=1 - horizon_days)}"
        )
    plan = plan or fold_plan(cutoff, horizon_days, first)
    observed = orders[orders["ordered_at"] < pd.Timestamp(cutoff + timedelta(days=horizon_days), tz="UTC")]
    parts = []
    for train_cutoff in plan.train_cutoffs:
        rows = features_at(observed, train_cutoff).assign(cutoff=train_cutoff)
        revenue = revenue_in(observed, rows["user_id"], train_cutoff, plan.label_days)
        parts.append(rows.assign(label=revenue * plan.scale))
    train = pd.concat(parts, ignore_index=True)
    train_y = train.pop("label").to_numpy(np.float64)
    holdout = features_at(observed, cutoff)
    y = revenue_in(observed, holdout["user_id"], cutoff, horizon_days)
    if len(train) < 10 or (train_y > 0).sum() < 2:
        raise UserError(f"cutoff {cutoff}: too few customers with revenue before it to learn from ({len(train)})")
    full = ltv_feature_schema()
    schema = full.without([c for c in full.columns if c not in train.columns])
    models = fit_models(train, train_y, horizon_days, schema, config)
    predictions = predict_all(models, holdout)
    if plan.scaled:  # as predict does: P(buys within the label window) -> within H
        network = predictions[NETWORK]
        predictions[NETWORK] = network.assign(prob_return=extrapolate_prob(network["prob_return"], plan.scale))
    metrics = evaluate_all(y, predictions)
    return BacktestFold(cutoff, horizon_days, len(train), len(holdout), metrics, y, predictions)


def backtest(
    orders: pd.DataFrame,
    cutoffs: Sequence[date],
    horizon_days: int,
    config: TrainConfig | None = None,
    echo: Callable[[str], None] | None = None,
) -> list[BacktestFold]:
    if not cutoffs:
        raise UserError("give at least one cutoff (--cutoffs D1,D2,...)")
    if horizon_days < 1:
        raise UserError(f"--horizon-days must be a positive whole number of days, got {horizon_days}")
    folds = []
    for cutoff in sorted(set(cutoffs)):
        if echo is not None:
            echo(f"backtest at {cutoff} (H = {horizon_days} d) ...")
        folds.append(backtest_fold(orders, cutoff, horizon_days, config or TrainConfig()))
    return folds


def summary_table(folds: Sequence[BacktestFold]) -> pd.DataFrame:
    """One row per (cutoff, model), the report's metrics as columns."""
    parts = [
        fold.metrics[list(REPORT_METRICS)].rename_axis("model").reset_index().assign(cutoff=fold.cutoff.isoformat())
        for fold in folds
    ]
    return pd.concat(parts, ignore_index=True).set_index(["cutoff", "model"])


def report_files(folds: Sequence[BacktestFold], directory: str | Path) -> list[Path]:
    """The files :func:`write_report` writes for ``folds`` (a reused folder may hold older cutoffs' charts)."""
    out = Path(directory)
    return [out / "backtest.html", out / "backtest.csv", *(p for fold in folds for p in _charts(out, fold))]


def _charts(out: Path, fold: BacktestFold) -> tuple[Path, Path]:
    """A fold's gain chart and the network's calibration plot."""
    stem = f"cutoff_{fold.cutoff.isoformat()}"
    return out / f"{stem}_gain.png", out / f"{stem}_calibration.png"


def write_report(folds: Sequence[BacktestFold], directory: str | Path) -> Path:
    """``directory``/backtest.html (tables, gain and calibration charts per cutoff) and backtest.csv."""
    from ltvfeed import csv_output
    from ltvfeed.training.plots import calibration_plot, gain_chart

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    table = summary_table(folds)
    csv_output.write_csv(table.reset_index(), out / "backtest.csv", index=False)  # cutoff, model as columns
    sections = []
    for fold in folds:
        gain_path, calibration_path = _charts(out, fold)
        expected = {name: p["expected_ltv"].to_numpy() for name, p in fold.predictions.items()}
        gain = gain_chart(fold.y, expected, gain_path)
        net = fold.predictions["ziln"]
        calibration = calibration_plot(
            fold.y, net["expected_ltv"].to_numpy(), calibration_path, prob_return=net["prob_return"]
        )
        images = "".join(
            f'<img alt="{html.escape(p.name)}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
            for p in (gain, calibration)
        )
        sections.append(
            f"<h2>cutoff {fold.cutoff} (train {fold.n_train} customers at {fold.cutoff - timedelta(fold.horizon_days)}"
            f", holdout {fold.n_holdout})</h2>{fold.metrics[list(REPORT_METRICS)].to_html(float_format='%.4f')}"
            f"{images}"
        )
    page = (
        "<!doctype html><meta charset='utf-8'><title>ltvfeed LTV backtest</title>"
        "<h1>LTV backtest: network vs naive vs BG/NBD + Gamma-Gamma</h1>"
        f"{table.to_html(float_format='%.4f')}{''.join(sections)}"
    )
    (out / "backtest.html").write_text(page, encoding="utf-8")
    return out / "backtest.html"

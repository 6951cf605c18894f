"""Evaluation charts saved as PNG files (to be logged as MLflow artifacts). Headless: figures are built with
matplotlib's object API (``Figure`` renders with Agg), never pyplot, so no global backend or open-figure state
is touched and long training runs do not accumulate figures."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ltvfeed.training.metrics import ArrayLike, decile_table, gain_curve


def gain_chart(y_true: ArrayLike, predictions: Mapping[str, ArrayLike], path: str | Path) -> Path:
    """Cumulative share of actual value vs share of customers taken by decreasing prediction, for each
    model, with the perfect ranking and random selection for reference."""
    fig, ax = _figure()
    customers, perfect = gain_curve(y_true, y_true)
    ax.plot(customers, perfect, color="black", linewidth=1.5, label="perfect")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="random")
    for name, pred in predictions.items():
        x, y = gain_curve(y_true, pred)
        ax.plot(x, y, label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="share of customers (by predicted LTV)", ylabel="share of actual value")
    ax.set_title("Gain chart")
    ax.legend(loc="lower right")
    return _save(fig, path)


def decile_chart(y_true: ArrayLike, y_pred: ArrayLike, path: str | Path, title: str = "Decile chart") -> Path:
    """Predicted vs actual mean value per predicted decile (bars side by side)."""
    table = decile_table(y_true, y_pred)
    fig, ax = _figure()
    positions = np.arange(len(table))
    ax.bar(positions - 0.2, table["pred_mean"], width=0.4, label="predicted mean")
    ax.bar(positions + 0.2, table["actual_mean"], width=0.4, label="actual mean")
    ax.set_xticks(positions, [str(i + 1) for i in positions])
    ax.set(xlabel="predicted decile (1 = lowest)", ylabel="mean value per customer")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return _save(fig, path)


def calibration_plot(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    path: str | Path,
    prob_return: ArrayLike | None = None,
    n_bins: int = 20,
) -> Path:
    """Mean actual vs mean predicted value in ``n_bins`` equal-count prediction bins (log-log, the diagonal
    is perfect calibration); with ``prob_return``, a second panel does the same for P(buys again) against
    the observed repeat rate."""
    panels = 1 if prob_return is None else 2
    fig, axes = _figure(ncols=panels)
    axes = np.atleast_1d(axes)
    table = decile_table(y_true, y_pred, n_bins=n_bins)
    ax = axes[0]
    shown = (table["pred_mean"] > 0) & (table["actual_mean"] > 0)
    ax.plot(table["pred_mean"][shown], table["actual_mean"][shown], marker="o")
    low = float(min(table["pred_mean"][shown].min(), table["actual_mean"][shown].min(), 1.0)) if shown.any() else 1.0
    high = float(max(table["pred_mean"].max(), table["actual_mean"].max(), low * 10))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set(xscale="log", yscale="log", xlabel="mean predicted value", ylabel="mean actual value")
    ax.set_title("Value calibration")
    if prob_return is not None:
        bought = (np.asarray(y_true, dtype=np.float64) > 0).astype(np.float64)
        prob_table = decile_table(bought, prob_return, n_bins=n_bins)
        ax = axes[1]
        ax.plot(prob_table["pred_mean"], prob_table["actual_mean"], marker="o")
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean P(buys again)", ylabel="observed repeat rate")
        ax.set_title("Return probability calibration")
    fig.tight_layout()
    return _save(fig, path)


def _figure(ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7 * ncols, 5))
    return fig, fig.subplots(ncols=ncols)


def _save(fig, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png", dpi=100, bbox_inches="tight")
    return target

"""LTV evaluation metrics, as used in the ZILN paper (Wang, Liu & Miao 2019) plus business views.

Ranking: normalized Gini (area under the gain curve relative to a perfect ranking), Spearman, AUC for
"buys again", top-decile capture. Calibration (the bar decided in issue 15): value-weighted decile error (VWDE),
total error, decile MAPE over the deciles holding >= 1 % of the realised value; the plain decile MAPE and the
total ratio stay as information (the plain MAPE is ill-posed where most customers stopped buying: deciles of
a buyer or two among thousands swing by hundreds of percent on noise). Ties in predictions
are treated as one block (the gain curve is linear across them), so a constant predictor scores exactly 0
Gini however the rows happen to be ordered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ArrayLike = Sequence[float] | np.ndarray | pd.Series

METRIC_COLUMNS = (
    "normalized_gini",
    "spearman",
    "decile_mape",
    "auc_buys_again",
    "top_decile_capture",
    "total_ratio",
    "vwde",
    "total_error",
    "decile_mape_valued",
)

# The calibration bar of issue 15, one place: what bench_ltv checks and what the backtest reports.
VWDE_BAR = 0.10
TOTAL_ERROR_BAR = 0.05
DECILE_MAPE_VALUED_BAR = 0.15
VALUED_DECILE_SHARE = 0.01  # a decile counts in decile_mape_valued when it holds >= 1 % of the realised value


def gain_curve(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(share of customers, share of total actual value) when customers are taken by decreasing prediction,
    starting at (0, 0). Tied predictions share their block's value evenly."""
    y, pred = _pair(y_true, y_pred)
    total = y.sum()
    if total <= 0:
        raise ValueError("gain curve needs a positive total actual value")
    order = np.argsort(-pred, kind="stable")
    y_sorted, pred_sorted = y[order], pred[order]
    # Replace each tie block's values by the block mean: the expected curve over random tie orders.
    _, block, counts = np.unique(pred_sorted, return_inverse=True, return_counts=True)
    block_mean = np.bincount(block, weights=y_sorted) / counts
    cumulative = np.concatenate([[0.0], np.cumsum(block_mean[block]) / total])
    customers = np.arange(len(y) + 1) / len(y)
    return customers, cumulative


def gini(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Raw Gini = 2 * area under the gain curve (trapezoids) - 1: 0 for a random/constant ranking."""
    customers, cumulative = gain_curve(y_true, y_pred)
    area = float(np.sum((cumulative[1:] + cumulative[:-1]) / 2 * np.diff(customers)))
    return 2.0 * area - 1.0


def normalized_gini(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Gini of the predicted ranking / Gini of the perfect ranking (by actual value): 1 is perfect,
    0 no better than random, negative worse than random."""
    best = gini(y_true, y_true)
    if best == 0:
        return float("nan")
    return gini(y_true, y_pred) / best


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman rank correlation (ties get average ranks); NaN when either side is constant."""
    from scipy.stats import spearmanr

    y, pred = _pair(y_true, y_pred)
    if np.all(y == y[0]) or np.all(pred == pred[0]):
        return float("nan")
    return float(spearmanr(y, pred).statistic)


def decile_table(y_true: ArrayLike, y_pred: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Customers split into ``n_bins`` equal-count groups by prediction (0 = lowest); per group: count,
    predicted mean, actual mean and absolute percentage error of the mean (NaN where the actual mean is 0)."""
    y, pred = _pair(y_true, y_pred)
    bins = _prediction_bins(pred, n_bins)
    table = (
        pd.DataFrame({"bin": bins, "pred": pred, "actual": y})
        .groupby("bin")
        .agg(n=("pred", "size"), pred_mean=("pred", "mean"), actual_mean=("actual", "mean"))
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ape = np.abs(table["pred_mean"] - table["actual_mean"]) / table["actual_mean"]
    # A group with no actual value has no percentage error (NaN), whatever was predicted.
    table["ape"] = np.where(table["actual_mean"] > 0, ape, np.nan)
    return table


def decile_mape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean over prediction deciles of |predicted mean - actual mean| / actual mean (the ZILN paper's
    calibration metric). Deciles whose actual mean is 0 have no percentage error and are left out (a model
    that finds the users who will not buy would otherwise score infinity); NaN if every decile is 0."""
    ape = decile_table(y_true, y_pred)["ape"]
    return float(ape.mean()) if ape.notna().any() else float("nan")


def vwde(y_true: ArrayLike, y_pred: ArrayLike, n_bins: int = 10) -> float:
    """Value-weighted decile error: sum over prediction deciles of |sum predicted - sum realised| / total
    realised. Each decile weighs by the money in it, so a near-empty decile cannot dominate; 0 is perfect, and
    it is at least |total error|. NaN when nothing was realised."""
    y, pred = _pair(y_true, y_pred)
    total = y.sum()
    if total <= 0:
        return float("nan")
    bins = _prediction_bins(pred, n_bins)
    gap = np.bincount(bins, weights=pred, minlength=n_bins) - np.bincount(bins, weights=y, minlength=n_bins)
    return float(np.abs(gap).sum() / total)


def total_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """(sum predicted - sum realised) / sum realised: +0.05 is a total 5 % too high; NaN when nothing was
    realised."""
    return total_ratio(y_true, y_pred) - 1.0


def decile_mape_valued(y_true: ArrayLike, y_pred: ArrayLike, min_share: float = VALUED_DECILE_SHARE) -> float:
    """Decile MAPE over the prediction deciles that hold at least ``min_share`` of the realised value (where the
    money is); NaN when nothing was realised."""
    y, _ = _pair(y_true, y_pred)
    total = y.sum()
    if total <= 0:
        return float("nan")
    table = decile_table(y_true, y_pred)
    held = table["actual_mean"] * table["n"] / total >= min_share
    return float(table.loc[held, "ape"].mean())


def _prediction_bins(pred: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin (0 = lowest) of each prediction in ``n_bins`` equal-count groups. Rank-based, not value cut points,
    so heavy ties (e.g. many zero predictions) cannot collapse bins."""
    if len(pred) < n_bins:
        raise ValueError(f"need at least {n_bins} customers for {n_bins} bins, got {len(pred)}")
    rank = np.empty(len(pred), dtype=np.int64)
    rank[np.argsort(pred, kind="stable")] = np.arange(len(pred))
    return rank * n_bins // len(pred)


@dataclass(frozen=True)
class MetricNoise:
    """Spread of a metric over futures drawn from the model's own predictive distribution."""

    draws: int
    median: float
    low: float  # 5th percentile
    high: float  # 95th percentile
    threshold: float
    share_below: float  # of the draws, the share scoring below ``threshold``


def decile_mape_noise(
    prob_return: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
    *,
    draws: int = 200,
    threshold: float = 0.15,
    seed: int = 0,
    n_bins: int = 10,
) -> MetricNoise:
    """Decile MAPE a *perfectly specified* model would score against one realised future.

    Futures are drawn from the ZILN mixture itself (revenue 0 with probability 1 - p, else
    LogNormal(mu, sigma)), so every user's expected value is exactly the prediction p * exp(mu + sigma^2 / 2)
    and any error left is the noise of one draw. Deciles that hold a buyer or two among thousands swing by
    hundreds of percent on that noise alone: this says whether a decile MAPE seen on a holdout can tell a
    good model from a bad one on that population.
    """
    p = np.asarray(prob_return, dtype=np.float64).reshape(-1)
    m = np.asarray(mu, dtype=np.float64).reshape(-1)
    s = np.asarray(sigma, dtype=np.float64).reshape(-1)
    if not p.shape == m.shape == s.shape:
        raise ValueError(f"prob_return, mu and sigma must have one value per user, got {p.size}, {m.size}, {s.size}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if not (np.isfinite(p).all() and np.isfinite(m).all() and np.isfinite(s).all()):
        raise ValueError("prob_return, mu and sigma must be finite")
    if (p < 0).any() or (p > 1).any() or (s < 0).any():
        raise ValueError("prob_return must lie in [0, 1] and sigma must be >= 0")
    predicted = p * np.exp(m + 0.5 * s**2)
    bins = _prediction_bins(predicted, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    predicted_mean = np.bincount(bins, weights=predicted, minlength=n_bins) / counts
    rng = np.random.default_rng(seed)
    scores = np.empty(draws)
    for k in range(draws):
        future = np.where(rng.random(p.size) < p, np.exp(m + s * rng.standard_normal(p.size)), 0.0)
        actual_mean = np.bincount(bins, weights=future, minlength=n_bins) / counts
        held = actual_mean > 0
        # As in decile_mape: a decile nobody bought in has no percentage error.
        ape = np.abs(predicted_mean[held] - actual_mean[held]) / actual_mean[held]
        scores[k] = ape.mean() if held.any() else np.nan
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        raise ValueError("no draw had any revenue: the decile MAPE is undefined for this population")
    low, median, high = np.quantile(scores, [0.05, 0.5, 0.95])
    return MetricNoise(
        draws=int(scores.size),
        median=float(median),
        low=float(low),
        high=float(high),
        threshold=float(threshold),
        share_below=float((scores < threshold).mean()),
    )


@dataclass(frozen=True)
class PairedDifference:
    """metric(a) - metric(b) on the same customers, with a percentile bootstrap interval over customers."""

    difference: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def paired_difference(
    y_true: ArrayLike,
    a: ArrayLike,
    b: ArrayLike,
    metric: Callable[[np.ndarray, np.ndarray], float],
    *,
    draws: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """How far model ``a`` ranks above (or below) ``b`` on one holdout, and whether that is more than the noise
    of which customers happened to be in it: both are scored on the same resampled customers each draw, so
    what the two share cancels. A gap whose interval holds 0 is a tie on this holdout."""
    y, pa, pb = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (y_true, a, b))
    if not y.size == pa.size == pb.size:
        raise ValueError(f"y_true, a and b must have one value per customer, got {y.size}, {pa.size}, {pb.size}")
    if draws < 1 or not 0 < level < 1:
        raise ValueError(f"draws must be >= 1 and level in (0, 1), got {draws}, {level}")
    rng = np.random.default_rng(seed)
    gaps = np.empty(draws)
    for k in range(draws):
        rows = rng.integers(0, y.size, y.size)
        gaps[k] = metric(y[rows], pa[rows]) - metric(y[rows], pb[rows])
    low, high = np.nanquantile(gaps, [(1 - level) / 2, (1 + level) / 2])
    return PairedDifference(float(metric(y, pa) - metric(y, pb)), float(low), float(high))


def auc(y_true: ArrayLike, score: ArrayLike) -> float:
    """ROC AUC of ``score`` for "buys again" (actual value > 0), via the Mann-Whitney rank sum; NaN when
    only one class is present."""
    from scipy.stats import rankdata

    y, s = _pair(y_true, score)
    positive = y > 0
    n_pos = int(positive.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def top_decile_capture(y_true: ArrayLike, y_pred: ArrayLike, fraction: float = 0.1) -> float:
    """Share of the total actual value held by the ``fraction`` of customers with the highest predictions
    (ties at the cut shared evenly)."""
    customers, cumulative = gain_curve(y_true, y_pred)
    return float(np.interp(fraction, customers, cumulative))


def total_ratio(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Sum of predictions / sum of actual values: 1 means the total is right."""
    y, pred = _pair(y_true, y_pred)
    total = y.sum()
    return float(pred.sum() / total) if total > 0 else float("nan")


def evaluate(
    y_true: ArrayLike,
    predictions: Mapping[str, ArrayLike | pd.DataFrame],
    probabilities: Mapping[str, ArrayLike] | None = None,
) -> pd.DataFrame:
    """Compare models: one row per model, one column per metric.

    ``predictions`` maps a model name to its expected LTV per customer, or to a prediction frame with an
    ``expected_ltv`` column (and ``prob_return``, used for the AUC, when the model has one). AUC is scored
    on the model's P(buys again) when given (frame column or ``probabilities``), else on expected LTV.
    """
    probabilities = dict(probabilities or {})
    rows = {}
    for name, prediction in predictions.items():
        if isinstance(prediction, pd.DataFrame):
            if "prob_return" in prediction.columns and name not in probabilities:
                probabilities[name] = prediction["prob_return"].to_numpy()
            prediction = prediction["expected_ltv"].to_numpy()
        pred = np.asarray(prediction, dtype=np.float64)
        rows[name] = {
            "normalized_gini": normalized_gini(y_true, pred),
            "spearman": spearman(y_true, pred),
            "decile_mape": decile_mape(y_true, pred),
            "auc_buys_again": auc(y_true, probabilities.get(name, pred)),
            "top_decile_capture": top_decile_capture(y_true, pred),
            "total_ratio": total_ratio(y_true, pred),
            "vwde": vwde(y_true, pred),
            "total_error": total_error(y_true, pred),
            "decile_mape_valued": decile_mape_valued(y_true, pred),
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(METRIC_COLUMNS))


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y.shape != pred.shape:
        raise ValueError(f"y_true has {y.size} values, predictions {pred.size}")
    if y.size == 0:
        raise ValueError("no values to evaluate")
    if not (np.isfinite(y).all() and np.isfinite(pred).all()):
        raise ValueError("values must be finite (no NaN/inf)")
    return y, pred

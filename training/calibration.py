"""Calibration of the network's expected LTV, fitted on the validation users after training.

Why: a lognormal fitted to heavy-tailed revenue gets the ranking right but its mean, exp(mu + sigma^2 / 2), is
biased (on the simulated shop by about +20 %, in sample as much as out of time), so totals and decile means are
off. A monotone map from raw to calibrated expected LTV fixes the level without touching the ranking.

How: validation users are split into equal-count bins by raw prediction; each bin gives a knot (mean raw
prediction, mean actual revenue); the knots are made non-decreasing by pooling adjacent violators (isotonic
regression on the bins) and interpolated linearly, proportionally outside the outermost knots. Scores keep
their order: a tiny proportional term breaks the ties a flat stretch would create.

The map becomes a factor c = calibrated / raw per user, applied to the lognormal part of the predictive
distribution (mu + log c): the expected LTV and the quantiles stay those of one distribution, P(buys again)
is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ltvfeed.errors import UserError

_TIE_BREAK = 1e-9  # share of the raw value added so that flat stretches still rank users as the network did


@dataclass(frozen=True)
class MeanCalibration:
    """Knots of the monotone map (raw expected LTV -> calibrated expected LTV); no knots = identity."""

    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        x, y = np.asarray(self.knots_x, dtype=np.float64), np.asarray(self.knots_y, dtype=np.float64)
        if x.shape != y.shape:
            raise UserError(f"calibration has {x.size} x knots but {y.size} y knots")
        if x.size and not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0) and np.all(y > 0)):
            raise UserError("calibration knots must be finite and > 0")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
            raise UserError("calibration knots must be increasing in x and non-decreasing in y")

    @property
    def is_identity(self) -> bool:
        return not self.knots_x

    @classmethod
    def fit(
        cls, predicted: np.ndarray, actual: np.ndarray, *, bins: int = 20, min_positive_per_bin: int = 10
    ) -> MeanCalibration:
        """Knots from validation predictions and actual revenue. Fewer bins when there are few buyers (each bin
        should hold about ``min_positive_per_bin`` of them); identity when not even two bins are possible."""
        pred = np.asarray(predicted, dtype=np.float64).reshape(-1)
        y = np.asarray(actual, dtype=np.float64).reshape(-1)
        if pred.shape != y.shape:
            raise UserError(f"calibration got {pred.size} predictions but {y.size} actual values")
        keep = np.isfinite(pred) & np.isfinite(y) & (pred > 0)
        pred, y = pred[keep], y[keep]
        n_bins = min(bins, int((y > 0).sum()) // max(min_positive_per_bin, 1), len(pred))
        if n_bins < 2 or y.sum() <= 0:
            return cls()
        order = np.argsort(pred, kind="stable")
        groups = np.array_split(order, n_bins)
        x = np.array([pred[g].mean() for g in groups])
        mean_y = np.array([y[g].mean() for g in groups])
        weight = np.array([len(g) for g in groups], dtype=np.float64)
        x, mean_y, weight = _merge_equal_x(x, mean_y, weight)
        fitted = _pool_adjacent_violators(mean_y, weight)
        # A bin without buyers would map to 0 and tie everyone below it: floor at a sliver of the raw value.
        fitted = np.maximum.accumulate(np.maximum(fitted, 1e-6 * x))
        return cls(tuple(float(v) for v in x), tuple(float(v) for v in fitted))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated expected LTV for raw expected LTV values (order preserved; 0 stays 0)."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.is_identity:
            return raw.copy()
        x, y = np.asarray(self.knots_x), np.asarray(self.knots_y)
        inside = np.interp(raw, x, y)
        below = raw * (y[0] / x[0])
        above = raw * (y[-1] / x[-1])
        value = np.where(raw < x[0], below, np.where(raw > x[-1], above, inside))
        return np.where(raw > 0, value + _TIE_BREAK * raw, 0.0)

    def factor(self, raw: np.ndarray) -> np.ndarray:
        """calibrated / raw per value (1 where raw is 0): the scale applied to the revenue distribution."""
        raw = np.asarray(raw, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(raw > 0, self.calibrate(raw) / raw, 1.0)

    def to_spec(self) -> dict[str, Any]:
        return {"knots_x": list(self.knots_x), "knots_y": list(self.knots_y)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> MeanCalibration:
        if not spec:
            return cls()
        return cls(tuple(float(v) for v in spec["knots_x"]), tuple(float(v) for v in spec["knots_y"]))


def _merge_equal_x(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bins with the same mean prediction (heavy ties) become one weighted knot."""
    unique, inverse = np.unique(x, return_inverse=True)
    weight = np.bincount(inverse, weights=w)
    return unique, np.bincount(inverse, weights=y * w) / weight, weight


def _pool_adjacent_violators(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted isotonic (non-decreasing) fit of ``y``: merge neighbouring blocks while a block's mean is
    below the previous one's."""
    means: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(y, w, strict=True):
        means.append(float(value))
        weights.append(float(weight))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            total = weights[-2] + weights[-1]
            merged = (means[-2] * weights[-2] + means[-1] * weights[-1]) / total
            means[-2:], weights[-2:], sizes[-2:] = [merged], [total], [sizes[-2] + sizes[-1]]
    return np.repeat(np.array(means), sizes)

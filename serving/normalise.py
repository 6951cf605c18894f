"""How each score component is brought into [0, 1], so that the weights mean what they say.

- commercial performance: brought into [0, 1] when the catalogue is built
  (:func:`ltvfeed.frames.inputs.normalise_commercial`);
- P(purchase): a probability, clipped to [0, 1] (models may overshoot by rounding), then by default divided
  by the largest P(purchase) among the user's eligible candidates (``purchase_scale="user_max"``): 1 for the
  item the user is most likely to buy. Raw purchase probabilities of single items are small (a few percent
  over the horizon) next to a commercial score spread over [0, 1], so unscaled they would barely move the
  ranking whatever their weight; relative to the user's best item the weights mean what they say.
  ``purchase_scale="probability"`` keeps the raw probability;
- diversity: 1 - the largest similarity (itself in [0, 1]) to the user's recent views and to items already
  picked, see :mod:`ltvfeed.serving.diversity`.
"""

from __future__ import annotations

import numpy as np

from ltvfeed.errors import UserError


def clip_probability(values: np.ndarray, expected_shape: tuple[int, ...]) -> np.ndarray:
    """A purchase-propensity model's output as probabilities in [0, 1]; wrong shapes and NaNs are errors."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != expected_shape:
        raise UserError(f"propensity model returned shape {values.shape}, expected {expected_shape}")
    if np.isnan(values).any():
        raise UserError(f"propensity model returned NaN for {int(np.isnan(values).sum())} candidate(s)")
    return np.clip(values, 0.0, 1.0)


def scale_purchase(probability: np.ndarray, eligible: np.ndarray, scale: str) -> np.ndarray:
    """P(purchase) [B, K] as its score component: ``probability`` kept, or (``user_max``) divided by each row's
    largest value over its ``eligible`` candidates (rows whose best is 0 stay 0)."""
    if scale == "probability":
        return probability
    if scale != "user_max":
        raise UserError(f"unknown purchase scale {scale!r}")
    best = np.where(eligible, probability, 0.0).max(axis=1, keepdims=True) if probability.size else probability
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(best > 0, probability / np.where(best > 0, best, 1.0), 0.0)

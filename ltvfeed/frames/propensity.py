"""The purchase-propensity plug-in point. A model is any callable

    propensity(user_idx: np.ndarray[B], item_idx: np.ndarray[B, K]) -> np.ndarray[B, K]

returning P(user buys item) for each user's candidates, where ``user_idx`` holds the users' rows in the model's
own user table (:attr:`UserBatch.user_index`) and ``item_idx`` catalogue row indices. It is called once per
scoring batch, never per item. Padding columns carry a valid index (0) and their results are ignored.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ltvfeed.errors import UserError
from ltvfeed.frames.inputs import Catalogue


class Propensity(Protocol):
    def __call__(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray: ...


class CategoryAffinityPropensity:
    """Stand-in until the trained model exists: P(purchase) = the user's share of interest in the item's
    category x the item's share of its category's recent orders (``Catalogue.popularity``; equal shares when
    the catalogue has no recent orders), so that items of one category are not all equally likely (rows of
    ``affinity`` are users in ``user_idx`` order, columns the catalogue's categories)."""

    def __init__(self, affinity: np.ndarray, catalogue: Catalogue) -> None:
        affinity = np.asarray(affinity, dtype=np.float64)
        if affinity.ndim != 2 or affinity.shape[1] != catalogue.n_categories:
            raise UserError(f"affinity must have shape (users, {catalogue.n_categories}), got {affinity.shape}")
        if not np.isfinite(affinity).all() or (affinity < 0).any():
            raise UserError("affinity must be finite and >= 0")
        totals = affinity.sum(axis=1, keepdims=True)
        self._share = np.divide(affinity, totals, out=np.zeros_like(affinity), where=totals > 0)
        self._category = catalogue.category
        weight = catalogue.popularity if catalogue.popularity.sum() > 0 else np.ones(catalogue.n_items)
        per_category = np.bincount(catalogue.category, weights=weight, minlength=catalogue.n_categories)
        self._within = weight / np.where(per_category > 0, per_category, 1.0)[catalogue.category]

    def __call__(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self._share[np.asarray(user_idx)[:, None], self._category[item_idx]] * self._within[item_idx]

"""Diversity as the feed is built (maximal marginal relevance): an item's diversity is 1 - its largest
similarity to the user's recent views (scaled by ``view_weight``) and to the items already picked for this feed,
so the second of two near-identical items loses its diversity bonus the moment the first is picked.

Similarity (in [0, 1], see :class:`~ltvfeed.serving.config.DiversityConfig`) is
``category_weight * [same category] + (1 - category_weight) * max(0, cosine)`` with item embeddings, else
``[same category]``. All operations are over whole [batch, K] arrays; the only Python loop is over the N picks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltvfeed.frames.inputs import Catalogue
from ltvfeed.serving.config import DiversityConfig


class CandidateSimilarity:
    """Similarities of each user's candidates ([B, K] item indices, -1 = padding) to other items."""

    def __init__(self, candidates: np.ndarray, catalogue: Catalogue, cfg: DiversityConfig) -> None:
        safe = np.where(candidates >= 0, candidates, 0)
        self._category = catalogue.category[safe]  # [B, K]
        self._unit = None if catalogue.unit_embeddings is None else catalogue.unit_embeddings[safe]  # [B, K, d]
        self._catalogue = catalogue
        self._category_weight = cfg.category_weight if self._unit is not None else 1.0
        self._rows = np.arange(candidates.shape[0])

    def _combine(self, same_category: np.ndarray, cosine: np.ndarray | None) -> np.ndarray:
        sim = self._category_weight * same_category
        if cosine is not None and self._category_weight < 1.0:
            sim = sim + (1.0 - self._category_weight) * np.clip(cosine, 0.0, 1.0)
        return sim

    def to_items(self, items: np.ndarray) -> np.ndarray:
        """[B, K]: each candidate's largest similarity to the user's ``items`` ([B, V], -1 = padding)."""
        b, k = self._category.shape
        used = np.flatnonzero((items >= 0).any(axis=0))
        items = items[:, : used[-1] + 1 if len(used) else 0]  # drop columns that are padding for everyone
        if items.shape[1] == 0:
            return np.zeros((b, k))
        present = items >= 0  # [B, V]
        safe = np.where(present, items, 0)
        same = (self._category[:, :, None] == self._catalogue.category[safe][:, None, :]).astype(np.float64)
        cosine = None
        if self._unit is not None:
            cosine = np.matmul(self._unit, self._catalogue.unit_embeddings[safe].transpose(0, 2, 1))  # [B, K, V]
        sim = self._combine(same, cosine)
        sim = np.where(present[:, None, :], sim, 0.0)
        return sim.max(axis=2)

    def to_candidate(self, position: np.ndarray) -> np.ndarray:
        """[B, K]: each candidate's similarity to the candidate at column ``position[b]`` of its row."""
        same = (self._category == self._category[self._rows, position][:, None]).astype(np.float64)
        cosine = None
        if self._unit is not None:
            cosine = np.einsum("bkd,bd->bk", self._unit, self._unit[self._rows, position])
        return self._combine(same, cosine)


@dataclass(frozen=True)
class Selection:
    """The N picks per user: candidate columns (-1 = nothing left to pick), their total score and diversity."""

    positions: np.ndarray
    scores: np.ndarray
    diversity: np.ndarray


def select_diverse(
    base: np.ndarray,
    available: np.ndarray,
    similarity: CandidateSimilarity,
    view_similarity: np.ndarray,
    diversity_weight: float,
    n: int,
) -> Selection:
    """Greedy MMR: at each of the ``n`` steps every user picks the available candidate maximising
    ``base + diversity_weight * (1 - max similarity to views and picks)``; ties go to the lowest column.

    ``base`` is the weighted sum of the other components ([B, K]); with ``diversity_weight`` 0 this is exactly
    a sort by ``base``. Diversity is still tracked so that every item can explain its score.
    """
    b, k = base.shape
    rows = np.arange(b)
    available = available.copy()
    max_similarity = view_similarity.copy()
    positions = np.full((b, n), -1, dtype=np.int64)
    scores = np.full((b, n), np.nan)
    diversity = np.full((b, n), np.nan)
    for step in range(min(n, k)):
        div = 1.0 - max_similarity
        total = np.where(available, base + diversity_weight * div, -np.inf)
        pick = np.argmax(total, axis=1)
        ok = available[rows, pick]
        if not ok.any():
            break
        positions[ok, step] = pick[ok]
        scores[ok, step] = total[rows, pick][ok]
        diversity[ok, step] = div[rows, pick][ok]
        available[rows, pick] = False
        if step + 1 < n:
            max_similarity = np.maximum(max_similarity, similarity.to_candidate(pick))
    return Selection(positions, scores, diversity)

"""The concept's pseudocode, transcribed literally: for one user, loop over every item, call per-item functions,
sort, take the top N. Deliberately slow and independent of the vectorised code (plain Python, no shared
helpers), so that it serves as the benchmark baseline and as a correctness oracle.

It applies the same exclusions (out of stock; already bought unless repeat-purchase) and the same documented
normalisation, but computes diversity against the user's recently viewed items only, as the pseudocode does;
so it agrees with :func:`ltvfeed.serving.scoring.score_batch` whenever the diversity weight is 0 (or N = 1) and
the candidates cover the catalogue. With ``diversify_picks=True`` it also runs the greedy loop the vectorised
code runs (each pick lowers the diversity of the items similar to it), one item at a time, so that the two agree
for any weights. ``predictUserLTV`` has no separate step: the user's LTV is an input of the
propensity model, which is called here once per item, as the pseudocode does.

    function generatePersonalizedFeed(userId, items):
        userLTV = predictUserLTV(userId)
        for each item in items:
            commercialPerformanceScore = calculateCommercialPerformanceScore(item)
            userPurchaseProbability = predictPurchaseProbability(userId, item, userLTV)
            diversityScore = calculateDiversityScore(item, user's viewed items)
            itemScore = 0.5 * commercialPerformanceScore + 0.4 * userPurchaseProbability + 0.1 * diversityScore
        sortedItems = sortItemsByScore(itemScores, descending)
        return topNItems(sortedItems, 10)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ltvfeed.errors import UserError
from ltvfeed.serving.config import ScoringWeights
from ltvfeed.serving.feed import Feed, FeedItem


@dataclass(frozen=True)
class ReferenceItem:
    index: int
    item_id: str
    category: str
    commercial: float
    in_stock: bool = True
    repeat_purchase: bool = False
    embedding: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ReferenceUser:
    user_id: str
    user_index: int = 0
    recently_viewed: tuple[str, ...] = ()
    purchased: frozenset[str] = field(default_factory=frozenset)


def commercial_bounds(items: Sequence[ReferenceItem]) -> tuple[float, float]:
    values = [item.commercial for item in items]
    return min(values), max(values)


def calculate_commercial_performance_score(item: ReferenceItem, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    if lo >= 0.0 and hi <= 1.0:
        return item.commercial
    if hi == lo:
        return 0.5
    return (item.commercial - lo) / (hi - lo)


def predict_purchase_probability(user: ReferenceUser, item: ReferenceItem, propensity: Callable | None) -> float:
    if propensity is None:
        return 0.0
    p = float(propensity(np.array([user.user_index]), np.array([[item.index]]))[0][0])
    return min(1.0, max(0.0, p))


def similarity(a: ReferenceItem, b: ReferenceItem, category_weight: float) -> float:
    same = 1.0 if a.category == b.category else 0.0
    if a.embedding is None or b.embedding is None:
        return same
    dot = sum(x * y for x, y in zip(a.embedding, b.embedding, strict=True))
    norm = math.sqrt(sum(x * x for x in a.embedding)) * math.sqrt(sum(y * y for y in b.embedding))
    cosine = dot / norm if norm > 0 else 0.0
    return category_weight * same + (1.0 - category_weight) * min(1.0, max(0.0, cosine))


def calculate_diversity_score(
    item: ReferenceItem, viewed: Sequence[ReferenceItem], category_weight: float, view_weight: float
) -> float:
    most_similar = 0.0
    for other in viewed:
        most_similar = max(most_similar, similarity(item, other, category_weight))
    return 1.0 - view_weight * most_similar


def generate_personalized_feed(
    user: ReferenceUser,
    items: Sequence[ReferenceItem],
    weights: ScoringWeights | None = None,
    n: int = 10,
    propensity: Callable | None = None,
    category_weight: float = 0.5,
    purchase_scale: str = "user_max",
    view_weight: float = 0.5,
    diversify_picks: bool = False,
) -> Feed:
    weights = weights or ScoringWeights()
    if weights.purchase > 0 and propensity is None:
        raise UserError("the purchase weight is > 0 but no propensity model was given")
    by_id = {item.item_id: item for item in items}
    viewed = [by_id[i] for i in user.recently_viewed if i in by_id]
    bounds = commercial_bounds(items)
    eligible = [
        item for item in items if item.in_stock and (item.item_id not in user.purchased or item.repeat_purchase)
    ]
    # P(purchase) of every item first: user_max scales by the user's most likely eligible item.
    probabilities = {}
    if weights.purchase > 0:
        probabilities = {item.item_id: predict_purchase_probability(user, item, propensity) for item in eligible}
    best = max(probabilities.values(), default=0.0) if purchase_scale == "user_max" else 1.0
    item_scores: list[tuple[float, ReferenceItem, float, float | None, float]] = []
    for item in eligible:
        commercial = calculate_commercial_performance_score(item, bounds)
        purchase = None
        if weights.purchase > 0:
            purchase = probabilities[item.item_id] / best if best > 0 else 0.0
        diversity = calculate_diversity_score(item, viewed, category_weight, view_weight)
        score = weights.commercial * commercial + weights.purchase * (purchase or 0.0) + weights.diversity * diversity
        item_scores.append((score, item, commercial, purchase, diversity))
    if diversify_picks:
        top = pick_greedily(item_scores, weights, n, category_weight)
    else:
        top = sorted(item_scores, key=lambda entry: entry[0], reverse=True)[:n]
    return Feed(user.user_id, tuple(FeedItem(it.item_id, s, c, p, d) for s, it, c, p, d in top))


def pick_greedily(
    item_scores: list[tuple[float, ReferenceItem, float, float | None, float]],
    weights: ScoringWeights,
    n: int,
    category_weight: float,
) -> list[tuple[float, ReferenceItem, float, float | None, float]]:
    """The whole greedy loop, one item at a time: an item's diversity is 1 - the largest of (its scaled
    similarity to the recent views) and (its similarity to each item picked so far); first best item wins ties."""
    remaining = list(item_scores)
    picked: list[ReferenceItem] = []
    top = []
    while remaining and len(top) < n:
        best = None
        for score, item, commercial, purchase, view_diversity in remaining:
            most_similar = 1.0 - view_diversity
            for other in picked:
                most_similar = max(most_similar, similarity(item, other, category_weight))
            diversity = 1.0 - most_similar
            total = score - weights.diversity * view_diversity + weights.diversity * diversity
            if best is None or total > best[0]:
                best = (total, item, commercial, purchase, diversity)
        top.append(best)
        picked.append(best[1])
        remaining = [entry for entry in remaining if entry[1] is not best[1]]
    return top


def reference_items(
    item_ids: Sequence[str],
    categories: Sequence[str],
    commercial: Sequence[float],
    in_stock: Sequence[bool] | None = None,
    repeat_purchase: Sequence[bool] | None = None,
    embeddings: np.ndarray | None = None,
) -> list[ReferenceItem]:
    """Items as the reference wants them, from the same raw columns a :class:`Catalogue` is built from."""
    n = len(item_ids)
    stock = list(in_stock) if in_stock is not None else [True] * n
    repeat = list(repeat_purchase) if repeat_purchase is not None else [False] * n
    return [
        ReferenceItem(
            index=i,
            item_id=str(item_ids[i]),
            category=str(categories[i]),
            commercial=float(commercial[i]),
            in_stock=bool(stock[i]),
            repeat_purchase=bool(repeat[i]),
            embedding=None if embeddings is None else tuple(float(x) for x in embeddings[i]),
        )
        for i in range(n)
    ]

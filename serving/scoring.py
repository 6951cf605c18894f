"""Feed scoring: the concept's relevance rule, vectorised over a batch of users and their K candidates.

    score = w_c * commercial + w_p * P(purchase) + w_d * diversity          (each component in [0, 1])

Per batch: candidates [B, K] -> commercial [B, K] (catalogue lookup) -> P(purchase) [B, K] (one call of the
propensity model) -> similarity of candidates to recent views [B, K] -> greedy diversity-aware selection of N
(N steps of [B, K] array operations). The classic feed (control arm) is this same path with weights 1/0/0 and
popular candidates only (:func:`classic_feed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ltvfeed.errors import UserError
from ltvfeed.frames.history import either_reason, history_probability
from ltvfeed.frames.inputs import CLASSIC_USER_ID, Catalogue, UserBatch
from ltvfeed.frames.propensity import Propensity
from ltvfeed.serving.candidates import generate_candidates
from ltvfeed.serving.config import FeedConfig, ScoringWeights
from ltvfeed.serving.diversity import CandidateSimilarity, select_diverse
from ltvfeed.serving.feed import Feed, FeedItem
from ltvfeed.serving.normalise import clip_probability, scale_purchase


@dataclass(frozen=True)
class RankedBatch:
    """Feeds of a batch as arrays ([B, N], -1 / NaN where a feed is shorter than N; ``purchase`` is NaN when
    P(purchase) had weight 0 and was not computed)."""

    user_ids: np.ndarray
    items: np.ndarray
    score: np.ndarray
    commercial: np.ndarray
    purchase: np.ndarray
    diversity: np.ndarray

    def to_feeds(self, catalogue: Catalogue) -> list[Feed]:
        present = self.items >= 0
        ids = np.where(present, catalogue.item_ids[np.where(present, self.items, 0)], None)
        purchase = np.where(np.isnan(self.purchase), None, self.purchase).tolist()
        columns = zip(
            ids.tolist(),
            self.score.tolist(),
            self.commercial.tolist(),
            purchase,
            self.diversity.tolist(),
            present.sum(axis=1).tolist(),
            strict=True,
        )
        return [
            Feed(user, tuple(FeedItem(*fields) for fields in zip(i[:m], s[:m], c[:m], p[:m], d[:m], strict=True)))
            for user, (i, s, c, p, d, m) in zip(self.user_ids.tolist(), columns, strict=True)
        ]


def _rank_chunk(
    users: UserBatch,
    catalogue: Catalogue,
    cfg: FeedConfig,
    propensity: Propensity | None,
    weightings: Sequence[ScoringWeights],
) -> list[RankedBatch]:
    """One ranking per weighting. Candidates, P(purchase) and similarities do not depend on the weights, so
    they are computed once and only the selection runs per weighting."""
    candidates = generate_candidates(users, catalogue, cfg.candidates)  # [B, K]
    valid = candidates >= 0
    safe = np.where(valid, candidates, 0)
    commercial = catalogue.commercial[safe]
    purchase = None
    if any(w.purchase > 0 for w in weightings):
        probability = clip_probability(propensity(users.user_index, safe), safe.shape)
        if "history" in cfg.candidates.sources and users.purchase_history is not None:
            again = history_probability(users, catalogue, candidates, cfg.candidates.history_horizon_days)
            probability = either_reason(probability, again)
        purchase = scale_purchase(probability, valid, cfg.purchase_scale)
    similarity = CandidateSimilarity(candidates, catalogue, cfg.diversity)
    to_views = cfg.diversity.view_weight * similarity.to_items(users.recent_views)
    ranked = []
    for w in weightings:
        base = w.commercial * commercial
        if w.purchase > 0:
            base = base + w.purchase * purchase
        picked = select_diverse(base, valid, similarity, to_views, w.diversity, cfg.n)
        found = picked.positions >= 0
        pos = np.where(found, picked.positions, 0)

        def gather(values: np.ndarray, found: np.ndarray = found, pos: np.ndarray = pos) -> np.ndarray:
            return np.where(found, np.take_along_axis(values, pos, axis=1), np.nan)

        ranked.append(
            RankedBatch(
                user_ids=users.user_ids,
                items=np.where(found, np.take_along_axis(candidates, pos, axis=1), -1),
                score=picked.scores,
                commercial=gather(commercial),
                purchase=np.full(found.shape, np.nan) if w.purchase <= 0 else gather(purchase),
                diversity=picked.diversity,
            )
        )
    return ranked


def concat_ranked(parts: Sequence[RankedBatch]) -> RankedBatch:
    """One batch of the users of ``parts``, in order."""
    if len(parts) == 1:
        return parts[0]
    return RankedBatch(*(np.concatenate([getattr(p, f) for p in parts]) for f in RankedBatch.__dataclass_fields__))


def rank_batch(
    users: UserBatch, catalogue: Catalogue, cfg: FeedConfig | None = None, propensity: Propensity | None = None
) -> RankedBatch:
    """Top-N feeds of all ``users`` as arrays, scored ``cfg.max_batch_users`` users at a time."""
    cfg = cfg or FeedConfig()
    return rank_batch_weighted(users, catalogue, cfg, propensity, [cfg.weights])[0]


def rank_batch_weighted(
    users: UserBatch,
    catalogue: Catalogue,
    cfg: FeedConfig,
    propensity: Propensity | None,
    weightings: Sequence[ScoringWeights],
) -> list[RankedBatch]:
    """:func:`rank_batch` once per weighting (``cfg.weights`` aside), from the same candidates and P(purchase):
    what a generation's variant feeds are."""
    for w in weightings:
        if w.purchase > 0 and propensity is None:
            raise UserError(
                f"the purchase weight is {w.purchase} but no propensity model was given; "
                "pass propensity=... or set the purchase weight to 0"
            )
    if users.recent_views.shape[1] and (users.recent_views.max() >= catalogue.n_items):
        raise UserError("recent views refer to items outside this catalogue; build the batch from the same catalogue")
    views = cfg.diversity.max_recent_views
    if users.recent_views.shape[1] > views:
        users = UserBatch(**{**users.__dict__, "recent_views": users.recent_views[:, :views]})
    parts = [
        _rank_chunk(users.slice(start, start + cfg.max_batch_users), catalogue, cfg, propensity, weightings)
        for start in range(0, len(users), cfg.max_batch_users)
    ]
    if not parts:
        empty = np.zeros((0, cfg.n))
        return [RankedBatch(users.user_ids, empty.astype(np.int64), empty, empty, empty, empty) for _ in weightings]
    return [concat_ranked([p[i] for p in parts]) for i in range(len(weightings))]


def score_batch(
    users: UserBatch, catalogue: Catalogue, cfg: FeedConfig | None = None, propensity: Propensity | None = None
) -> list[Feed]:
    """One feed per user of ``users`` (same order), top ``cfg.n`` items with their score components."""
    return rank_batch(users, catalogue, cfg, propensity).to_feeds(catalogue)


def classic_feed(catalogue: Catalogue, cfg: FeedConfig | None = None, user_id: str = CLASSIC_USER_ID) -> Feed:
    """The control arm's feed: commercial performance only, the same for everyone, by the same code path."""
    cfg = (cfg or FeedConfig()).classic()
    return score_batch(UserBatch.anonymous(user_id), catalogue, cfg)[0]

"""Feed-generation configuration: plain, validated, serialisable values (they are recorded in each feed
generation's metadata), so that a feed can always be traced back to the weights that ranked it.

The score of an item is the concept's rule with the weights as configuration::

    score = commercial_weight * commercial + purchase_weight * P(purchase) + diversity_weight * diversity

with each component in [0, 1] (see :mod:`ltvfeed.serving.scoring`). Weights are used as given (not rescaled),
so with weights summing to 1 (the default 0.2 / 0.8 / 0, the concept's 0.5 / 0.4 / 0.1) a score lies in [0, 1].
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ltvfeed.cutoff import DEFAULT_PROPENSITY_HORIZON_DAYS
from ltvfeed.errors import UserError

MAX_FEED_LENGTH = 100
MAX_CANDIDATES = 10_000
CANDIDATE_SOURCES = ("history", "co_bought", "embedding", "category", "popular_now", "popular")
PURCHASE_SCALES = ("user_max", "probability")
# Baseline feeds a generation falls back to for users with history when the model lost to them on its last
# evaluation (names as the propensity evaluation calls its baselines). Its ``cold_start`` floor row is no feed
# of its own: losing to it, a generation switches to the ``category_affinity`` source (begin_generation).
FALLBACKS = ("buy_again", "popularity", "classic")


@dataclass(frozen=True)
class ScoringWeights:
    """Weights of the three score components; non-negative, finite, not all zero.

    The default is the best measured setting: highest NDCG@10 (then Recall@10) averaged over the served
    configurations of both benchmark shops (docs/benchmarks.md "Feeds beside the simple baselines"). Once
    P(purchase) carries the user's own re-buy history, weight on it ranks what the user is about to buy, and
    diversity only pushes that out. The concept's 0.5 / 0.4 / 0.1 stays selectable as the preset ``concept``.
    """

    commercial: float = 0.2
    purchase: float = 0.8
    diversity: float = 0.0

    def __post_init__(self) -> None:
        for name in ("commercial", "purchase", "diversity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"scoring weight {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise UserError(f"scoring weight {name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.commercial + self.purchase + self.diversity <= 0:
            raise UserError("scoring weights must not all be 0 (commercial + purchase + diversity > 0)")

    @classmethod
    def classic(cls) -> ScoringWeights:
        """The control arm: commercial performance only, nothing personal."""
        return cls(commercial=1.0, purchase=0.0, diversity=0.0)

    @classmethod
    def concept(cls) -> ScoringWeights:
        """The concept's weights, kept for comparison and for shops where they measure better."""
        return cls(commercial=0.5, purchase=0.4, diversity=0.1)

    @classmethod
    def preset(cls, name: str) -> ScoringWeights:
        """A named setting of :data:`WEIGHT_PRESETS` (``default``, ``concept``, ``classic``)."""
        if name not in WEIGHT_PRESETS:
            raise UserError(f"unknown weight preset {name!r}: use one of {', '.join(WEIGHT_PRESETS)}")
        return WEIGHT_PRESETS[name]()


# Named weight settings, selectable wherever weights are (CLI --weights, the DAG's `weights` param, benches).
WEIGHT_PRESETS: dict[str, Callable[[], ScoringWeights]] = {
    "default": ScoringWeights,
    "concept": ScoringWeights.concept,
    "classic": ScoringWeights.classic,
}


def describe_presets() -> str:
    """``default 0.2/0.8/0, concept 0.5/0.4/0.1, ...``: the presets as help texts show them."""
    shown = ((name, make()) for name, make in WEIGHT_PRESETS.items())
    return ", ".join(f"{name} {w.commercial:g}/{w.purchase:g}/{w.diversity:g}" for name, w in shown)


# What an experiment arm serves: the generation's classic feed, its personalised feed, or one of its variants
# (personalised feeds ranked with other weights in the same run), named ``variant:NAME``.
CLASSIC_FEED, PERSONALISED_FEED, VARIANT_PREFIX = "classic", "personalised", "variant:"
_VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def check_variant_name(name: object) -> str:
    """A variant's name: it becomes part of Redis keys and of the arm's feed name ``variant:NAME``."""
    if not isinstance(name, str) or not _VARIANT_NAME.match(name):
        raise UserError(f"variant name {name!r} is invalid: use 1-40 of a-z 0-9 _ - (starting with a letter or digit)")
    return name


def variant_of(feed: str) -> str | None:
    """NAME of the feed name ``variant:NAME`` (checked); None for any other feed name."""
    return check_variant_name(feed.removeprefix(VARIANT_PREFIX)) if feed.startswith(VARIANT_PREFIX) else None


@dataclass(frozen=True)
class CandidateConfig:
    """How many candidates each user gets (``k``) and from which retrieval sources.

    Sources: ``history`` (the user's re-buyable bought items, likeliest to be bought again within
    ``history_horizon_days`` first: see :mod:`ltvfeed.frames.history`) takes up to ``history_share`` of the K
    slots first; the others are merged round-robin in this order of priority and deduplicated: ``co_bought``
    (items bought in the same orders as the user's purchases, when the catalogue has the table), ``embedding``
    (dot product of user and item embeddings, when both are given), ``category`` (best-performing items of the
    user's ``top_categories`` favourite categories), ``popular_now`` (most ordered items of the recent window),
    ``popular`` (the catalogue's best commercial performers).
    """

    k: int = 200
    sources: tuple[str, ...] = CANDIDATE_SOURCES
    top_categories: int = 3
    history_share: float = 0.5
    history_horizon_days: int = DEFAULT_PROPENSITY_HORIZON_DAYS

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_CANDIDATES:
            raise UserError(f"candidate count k must be an integer between 1 and {MAX_CANDIDATES}, got {self.k!r}")
        sources = tuple(self.sources)
        unknown = [s for s in sources if s not in CANDIDATE_SOURCES]
        if unknown or not sources or len(set(sources)) != len(sources):
            raise UserError(
                f"candidate sources must be distinct names from {', '.join(CANDIDATE_SOURCES)}, got {list(sources)}"
            )
        object.__setattr__(self, "sources", sources)
        if isinstance(self.top_categories, bool) or not isinstance(self.top_categories, int) or self.top_categories < 1:
            raise UserError(f"top_categories must be an integer >= 1, got {self.top_categories!r}")
        share = self.history_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 <= share <= 1.0:
            raise UserError(f"history_share must be a number in [0, 1], got {share!r}")
        h = self.history_horizon_days
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise UserError(f"history_horizon_days must be an integer >= 1, got {h!r}")


@dataclass(frozen=True)
class DiversityConfig:
    """How similar two items are, and how much of the user's history counts.

    similarity(a, b) = category_weight * [same category] + (1 - category_weight) * max(0, cosine(emb a, emb b))
    when the catalogue has item embeddings; without embeddings it is just [same category]. An item's diversity
    is 1 - max(view_weight * its largest similarity to recent views, its largest similarity to items picked).
    """

    category_weight: float = 0.5
    max_recent_views: int = 20
    # How much similarity to the user's recent views counts, relative to similarity to items already picked
    # (1: the same; 0: only the feed itself is diversified). Below 1 because what a user browses is also what
    # they tend to buy: on the simulated shop 1.0 cost the feed of the concept's weights (then the default) 16 %
    # of its NDCG@10 against 0.5, while picks stay fully diversified. Moot under the default weights (w_d = 0).
    view_weight: float = 0.5

    def __post_init__(self) -> None:
        cw = self.category_weight
        if isinstance(cw, bool) or not isinstance(cw, int | float) or not 0.0 <= cw <= 1.0:
            raise UserError(f"diversity category_weight must be a number in [0, 1], got {cw!r}")
        object.__setattr__(self, "category_weight", float(cw))
        vw = self.view_weight
        if isinstance(vw, bool) or not isinstance(vw, int | float) or not 0.0 <= vw <= 1.0:
            raise UserError(f"diversity view_weight must be a number in [0, 1], got {vw!r}")
        object.__setattr__(self, "view_weight", float(vw))
        v = self.max_recent_views
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UserError(f"max_recent_views must be an integer >= 0, got {v!r}")


@dataclass(frozen=True)
class FeedConfig:
    """Everything that decides a feed: weights, feed length ``n``, candidates, diversity, batch size."""

    weights: ScoringWeights = field(default_factory=ScoringWeights)
    n: int = 10
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    max_batch_users: int = 256
    # How P(purchase) becomes its [0, 1] component (see ltvfeed.serving.normalise.scale_purchase): relative to
    # the user's most likely candidate (default), or the raw probability.
    purchase_scale: str = "user_max"
    # None: every user gets the ranked feed. A baseline name: users with purchases get that baseline's feed
    # instead (the ranking lost to it on the model's last out-of-time evaluation); recorded in the metadata.
    fallback: str | None = None

    def __post_init__(self) -> None:
        if self.fallback is not None and self.fallback not in FALLBACKS:
            raise UserError(f"fallback must be one of {', '.join(FALLBACKS)} or None, got {self.fallback!r}")
        if self.purchase_scale not in PURCHASE_SCALES:
            raise UserError(f"purchase_scale must be one of {', '.join(PURCHASE_SCALES)}, got {self.purchase_scale!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n <= MAX_FEED_LENGTH:
            raise UserError(f"feed length n must be an integer between 1 and {MAX_FEED_LENGTH}, got {self.n!r}")
        if self.candidates.k < self.n:
            raise UserError(f"candidate count k ({self.candidates.k}) must be at least the feed length n ({self.n})")
        mb = self.max_batch_users
        if isinstance(mb, bool) or not isinstance(mb, int) or mb < 1:
            raise UserError(f"max_batch_users must be an integer >= 1, got {mb!r}")

    def classic(self) -> FeedConfig:
        """The same configuration as the control arm: commercial weight only, popular candidates only."""
        return replace(
            self,
            weights=ScoringWeights.classic(),
            candidates=replace(self.candidates, sources=("popular",)),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, recorded in the feed generation's metadata."""
        data = asdict(self)
        data["candidates"]["sources"] = list(self.candidates.sources)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeedConfig:
        """Inverse of :meth:`to_dict`; missing parts take their defaults, unknown keys are an error."""
        data = dict(data)
        try:
            weights = ScoringWeights(**data.pop("weights", {}))
            cand = dict(data.pop("candidates", {}))
            if "sources" in cand:
                cand["sources"] = tuple(cand["sources"])
            candidates = CandidateConfig(**cand)
            diversity = DiversityConfig(**data.pop("diversity", {}))
            return cls(weights=weights, candidates=candidates, diversity=diversity, **data)
        except TypeError as exc:
            raise UserError(f"invalid feed configuration: {exc}") from exc

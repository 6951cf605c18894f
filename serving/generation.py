"""Batch feed generation: every user's feed for one cutoff, computed in vectorised chunks and written to the
feed store as one generation (begin -> shards -> classic -> commit; see :mod:`.feed_store`).

Users are split into shards by a stable hash of their id (:mod:`.shards`), so shards can run as parallel
workers (the ``feed_generation`` DAG maps one task per shard) and a failed shard can be rerun alone. Within a
shard, users are read and ranked ``chunk_users`` at a time (:func:`generate_feeds`): memory is bounded by the
chunk, not by the shard. Each chunk is one :func:`~.scoring.rank_batch` call (itself batched by
``FeedConfig.max_batch_users``) - no per-item Python loop anywhere. The classic feed (control arm) comes from the
same scorer with :meth:`FeedConfig.classic`.

Embedding retrieval needs a user vector: users known to the propensity model have theirs; cold users
(``user_index == -1``) get the model's unknown-user vector when it has one, else they are ranked in a separate
sub-batch without embedding retrieval (an all-zero vector would retrieve arbitrary items), still with
P(purchase) from the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from ltvfeed.cutoff import required_as_of
from ltvfeed.errors import UserError
from ltvfeed.frames.inputs import Catalogue, UserBatch
from ltvfeed.serving.baselines import buy_again_items, popular_now_items
from ltvfeed.serving.config import (
    CANDIDATE_SOURCES,
    MAX_CANDIDATES,
    MAX_FEED_LENGTH,
    CandidateConfig,
    DiversityConfig,
    FeedConfig,
    ScoringWeights,
    check_variant_name,
)
from ltvfeed.serving.feed import Feed
from ltvfeed.serving.propensity_sources import REGISTRY, PropensitySource, check_source
from ltvfeed.serving.scoring import RankedBatch, classic_feed, concat_ranked, rank_batch_weighted
from ltvfeed.shards import check_shards
from ltvfeed.warehouse.generation_reads import UserChunk

WEIGHT_KEYS = {"w_c": "commercial", "w_p": "purchase", "w_d": "diversity"}
MAX_CHUNK_USERS = 100_000


def weights_from_mapping(values: Mapping[str, Any] | str | None) -> ScoringWeights:
    """Weights from a preset name (``"default"``, ``"concept"``, ``"classic"``: see
    :data:`~ltvfeed.serving.config.WEIGHT_PRESETS`) or a mapping of ``{"w_c", "w_p", "w_d"}`` (the DAG/CLI form)
    or ``{"commercial", "purchase", "diversity"}``, optionally with ``"preset"``: the weights it names override
    that preset's (``default`` when none is named); missing ones take the preset's."""
    if values is None:
        return ScoringWeights()
    if isinstance(values, str):
        return ScoringWeights.preset(values)
    if not isinstance(values, Mapping):
        raise UserError(
            f"weights must be a preset name or a mapping like {{'w_c': 0.5, 'w_p': 0.4, 'w_d': 0.1}}, got {values!r}"
        )
    names = {WEIGHT_KEYS.get(k, k): v for k, v in values.items()}
    base = ScoringWeights.preset(str(names.pop("preset", "default")))
    unknown = sorted(set(names) - set(WEIGHT_KEYS.values()))
    if unknown:
        raise UserError(f"unknown weight(s) {unknown}: use preset, w_c (commercial), w_p (purchase), w_d (diversity)")
    return replace(base, **names)


def weights_from_text(text: str) -> ScoringWeights:
    """Weights from a preset name or ``commercial/purchase/diversity`` (``"0.5/0.4/0.1"``)."""
    if "/" not in text:
        return ScoringWeights.preset(text.strip())
    parts = text.split("/")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        values = []
    if len(values) != 3:
        raise UserError(f"weights {text!r}: use a preset name or commercial/purchase/diversity like 0.5/0.4/0.1")
    return ScoringWeights(*values)


def variants_from_mapping(values: Mapping[str, Any] | None) -> dict[str, ScoringWeights]:
    """Variants from ``{name: weights}``, each weights a preset name, ``c/p/d`` text or a mapping as
    :func:`weights_from_mapping` takes (the DAG form)."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise UserError(f"variants must be a mapping like {{'concept': 'concept'}}, got {values!r}")
    return {
        check_variant_name(name): weights_from_text(spec) if isinstance(spec, str) else weights_from_mapping(spec)
        for name, spec in values.items()
    }


def variants_from_texts(texts: Iterable[str]) -> dict[str, ScoringWeights]:
    """Variants from ``NAME=PRESET`` or ``NAME=c/p/d`` texts (the CLI's repeatable ``--variant``)."""
    variants: dict[str, ScoringWeights] = {}
    for text in texts:
        name, sep, spec = text.partition("=")
        if not sep or not spec.strip():
            raise UserError(f"--variant {text!r}: use NAME=PRESET or NAME=commercial/purchase/diversity")
        if name.strip() in variants:
            raise UserError(f"--variant {name.strip()!r} is given twice")
        variants[check_variant_name(name.strip())] = weights_from_text(spec)
    return variants


def diversity_from_mapping(values: Mapping[str, Any] | None) -> DiversityConfig:
    """Diversity settings from ``{"category_weight", "view_weight", "max_recent_views"}`` (the DAG/CLI form);
    missing ones take their defaults."""
    if values is None:
        return DiversityConfig()
    if not isinstance(values, Mapping):
        raise UserError(f"diversity must be a mapping like {{'view_weight': 0.5}}, got {values!r}")
    known = list(DiversityConfig.__dataclass_fields__)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(f"unknown diversity setting(s) {unknown}: use {', '.join(known)}")
    return DiversityConfig(**values)


def _positive_int(value: Any, name: str, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
        raise UserError(f"{name} must be an integer between 1 and {upper}, got {value!r}")
    return value


@dataclass(frozen=True)
class GenerationParams:
    """What one generation is asked to do; recorded in its metadata and passed between DAG tasks (as a dict)."""

    as_of: date
    n: int = 10
    weights: ScoringWeights = field(default_factory=ScoringWeights)
    shards: int = 4
    k: int = 200
    chunk_users: int = 5000
    propensity_source: str = REGISTRY
    purchase_scale: str = "user_max"  # see FeedConfig.purchase_scale
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    fallback: str | None = None  # see FeedConfig.fallback; set by begin_generation from the model's evaluation
    # False: never fall back, even when the champion lost to a baseline (experiments; the metadata still says)
    baseline_fallback: bool = True
    # Further personalised feeds of the run, ranked with other weights (experiment arms ``variant:NAME``)
    variants: dict[str, ScoringWeights] = field(default_factory=dict)
    # Candidate sources of the personalised feeds (see CandidateConfig; benches compare with and without one)
    candidate_sources: tuple[str, ...] = CANDIDATE_SOURCES

    def __post_init__(self) -> None:
        if isinstance(self.candidate_sources, str):
            raise UserError(f"candidate_sources must be a list of source names, got {self.candidate_sources!r}")
        object.__setattr__(self, "candidate_sources", tuple(self.candidate_sources))
        if not isinstance(self.as_of, date):
            raise UserError(f"as_of must be a date, got {self.as_of!r}")
        _positive_int(self.n, "feed length n", MAX_FEED_LENGTH)
        check_shards(self.shards)
        _positive_int(self.k, "candidate count K", MAX_CANDIDATES)
        _positive_int(self.chunk_users, "chunk_users", MAX_CHUNK_USERS)
        check_source(self.propensity_source)
        for name, weights in self.variants.items():
            if not isinstance(weights, ScoringWeights):
                raise UserError(f"variant {check_variant_name(name)}: weights must be ScoringWeights, got {weights!r}")
        self.feed_config()  # k >= n and the other cross-field rules

    def feed_config(self) -> FeedConfig:
        return FeedConfig(
            weights=self.weights,
            n=self.n,
            candidates=CandidateConfig(k=self.k, sources=self.candidate_sources),
            diversity=self.diversity,
            purchase_scale=self.purchase_scale,
            fallback=self.fallback,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["as_of"] = self.as_of.isoformat()
        data["candidate_sources"] = list(self.candidate_sources)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationParams:
        data = dict(data)
        as_of = required_as_of(data.pop("as_of", None))
        weights = weights_from_mapping(data.pop("weights", None))
        variants = variants_from_mapping(data.pop("variants", None))
        try:
            diversity = diversity_from_mapping(data.pop("diversity", None))
            return cls(as_of=as_of, weights=weights, diversity=diversity, variants=variants, **data)
        except TypeError as exc:
            raise UserError(f"invalid generation parameters: {exc}") from exc


def _fast_timestamps(views: pd.DataFrame) -> pd.DataFrame:
    """Views with ``viewed_at`` as naive UTC datetime64: a tz-aware column becomes an object array of Timestamps
    when sorted inside ``UserBatch.from_frames`` (~5 us per row); the order is the same."""
    at = views.get("viewed_at")
    if at is None or not isinstance(at.dtype, pd.DatetimeTZDtype):
        return views
    return views.assign(viewed_at=at.dt.tz_convert("UTC").dt.tz_localize(None))


def baseline_ranked(batch: UserBatch, catalogue: Catalogue, cfg: FeedConfig, name: str) -> RankedBatch:
    """The baseline feed ``name`` (:data:`~.config.FALLBACKS`) of every user of ``batch``, as a RankedBatch
    (score = commercial performance, no P(purchase), diversity 0)."""
    b, n = len(batch), cfg.n
    if name == "buy_again":
        items = buy_again_items(batch, catalogue, n)
    else:
        top = popular_now_items(catalogue, n) if name == "popularity" else catalogue.popular(n)
        items = np.full((b, n), -1, dtype=np.int64)
        items[:, : len(top)] = top
    present = items >= 0
    commercial = np.where(present, catalogue.commercial[np.where(present, items, 0)], np.nan)
    zero = np.where(present, 0.0, np.nan)
    return RankedBatch(batch.user_ids, items, commercial, commercial, np.full((b, n), np.nan), zero)


def _with_fallback(ranked: RankedBatch, batch: UserBatch, catalogue: Catalogue, cfg: FeedConfig) -> RankedBatch:
    """Users with purchases get the fallback baseline's feed (rows of ``ranked`` follow ``batch``)."""
    with_history = np.zeros(len(batch), dtype=bool)
    with_history[batch.purchased_rows] = True
    if cfg.fallback is None or not with_history.any():
        return ranked
    base = baseline_ranked(batch, catalogue, cfg, cfg.fallback)
    fields = [f for f in RankedBatch.__dataclass_fields__ if f != "user_ids"]
    mixed = {f: np.where(with_history[:, None], getattr(base, f), getattr(ranked, f)) for f in fields}
    return RankedBatch(user_ids=ranked.user_ids, **mixed)


def rank_chunk(catalogue: Catalogue, chunk: UserChunk, cfg: FeedConfig, source: PropensitySource) -> RankedBatch:
    """Feeds of one chunk of users as arrays (users in any order: see ``RankedBatch.user_ids``); with
    ``cfg.fallback``, users with purchases get that baseline's feed."""
    return rank_chunk_variants(catalogue, chunk, cfg, source, {})[None]


def rank_chunk_variants(
    catalogue: Catalogue,
    chunk: UserChunk,
    cfg: FeedConfig,
    source: PropensitySource,
    variants: Mapping[str, ScoringWeights],
) -> dict[str | None, RankedBatch]:
    """:func:`rank_chunk`'s feeds (key None) and each variant's (``cfg`` with the variant's weights), from the
    same inputs, candidates and P(purchase): a variant costs only its selection."""
    ids = np.asarray(chunk.user_ids, dtype=object)
    user_index = source.index_users(ids)
    found = source.user_embeddings(user_index) if "embedding" in cfg.candidates.sources else None
    if found is not None and catalogue.embeddings is None:
        found = None
    embeddings, n_embedded = None, 0
    if found is not None:
        vectors, has = found
        order = np.argsort(~has, kind="stable")  # users with an embedding first
        ids, user_index, embeddings = ids[order], user_index[order], vectors[order]
        n_embedded = int(has.sum())
    batch = UserBatch.from_frames(
        catalogue,
        ids,
        views=_fast_timestamps(chunk.views),
        purchases=chunk.purchases,
        category_affinity=chunk.category_affinity,
        embeddings=embeddings,
        user_index=user_index,
        max_recent_views=cfg.diversity.max_recent_views,
    )
    weightings = [cfg.weights, *variants.values()]
    propensity = source.propensity(catalogue, batch) if any(w.purchase > 0 for w in weightings) else None
    if embeddings is None or n_embedded == len(ids):
        ranked = rank_batch_weighted(batch, catalogue, cfg, propensity, weightings)
    else:
        embedded = batch.slice(0, n_embedded)
        parts = [rank_batch_weighted(embedded, catalogue, cfg, propensity, weightings)] if n_embedded else []
        without = replace(batch.slice(n_embedded, len(ids)), embeddings=None)
        parts.append(rank_batch_weighted(without, catalogue, cfg, propensity, weightings))
        ranked = [concat_ranked([p[i] for p in parts]) for i in range(len(weightings))]
    names = [None, *variants]
    return {name: _with_fallback(r, batch, catalogue, cfg) for name, r in zip(names, ranked, strict=True)}


def generate_feeds(
    catalogue: Catalogue,
    chunks: Iterable[UserChunk],
    cfg: FeedConfig,
    source: PropensitySource,
    on_chunk: Callable[[int], None] | None = None,
    variants: Mapping[str, ScoringWeights] | None = None,
) -> Iterator[Feed | tuple[str, Feed]]:
    """Every user's feed, chunk by chunk (lazily: only one chunk's inputs and feeds are in memory at a time),
    and with ``variants`` each variant's feed of the user as ``(name, feed)`` (what
    :meth:`~.feed_store.FeedStore.write_shard` takes); ``on_chunk(users)`` is called after each chunk is ranked
    (progress bars, counters)."""
    for chunk in chunks:
        if not len(chunk):
            continue
        ranked = rank_chunk_variants(catalogue, chunk, cfg, source, variants or {})
        if on_chunk is not None:
            on_chunk(len(chunk))
        for name, batch in ranked.items():
            feeds = batch.to_feeds(catalogue)
            yield from feeds if name is None else ((name, feed) for feed in feeds)


@contextmanager
def single_threaded_math() -> Iterator[None]:
    """Run the block with one BLAS/OpenMP thread (and one torch thread, if torch is loaded).

    Why: generation scales out by shards, one worker process per core. The products inside a scoring batch are
    small ([256, 10^4] at most), and measured on a 2-core machine a BLAS call of that size took ~10x longer
    with 2 threads than with 1, as the threads of both workers fight for the same cores. Restored on exit."""
    import sys

    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it only torch is limited
        limits = nullcontext()
    else:
        limits = threadpool_limits(limits=1)
    try:
        with limits:
            if torch is not None:
                torch.set_num_threads(1)
            yield
    finally:
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)


def generation_classic_feed(catalogue: Catalogue, cfg: FeedConfig) -> Feed:
    """The control arm's feed for this generation: the same scorer, :meth:`FeedConfig.classic`."""
    feed = classic_feed(catalogue, cfg)
    if not feed.items:
        raise UserError("the classic feed is empty: no item of the catalogue is in stock")
    return feed

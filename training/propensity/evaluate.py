"""Offline evaluation on an out-of-time holdout: AUC, NDCG@k and Recall@k of the model against baselines.

The holdout is a later cutoff T2 than training's: purchases in [T2, T2 + horizon) by customers with a
snapshot at T2, scored with features as of T2. Two views of it:

- AUC over the bought pairs and popularity-drawn negatives (same sampler as training, another seed): does
  the ranker score a bought pair above an unbought one?
- NDCG@k and Recall@k per user over the WHOLE item table at T2 (every item the user could have been shown),
  averaged over users with at least one purchase (a seeded sample of ``max_eval_users``). Relevance is
  binary (bought or not). Recall@k = bought items in the top k / bought items. Ties in a ranker's scores are
  broken by item row, the same way for every ranker. Items bought before T2 stay in the ranking (a repeat
  purchase is a hit), unlike serving, which hides one-off items already bought.

AUC depends on the negatives: drawn by popularity, they make popularity itself a weak separator (its AUC sits
near 0.5-0.7 by design), while NDCG/Recall over the whole item table do not depend on sampling.

Baselines: ``popularity`` (the item's orders in the look-back before T2, the same number for every user),
``classic`` (marts.item_performance.commercial_score, the non-personal feed's ranking), ``buy_again`` (the
items the user bought in the look-back, most often bought first, then popularity) and ``cold_start``
(:class:`ColdStartRanker`: what generation serves with no model, the category-affinity P combined with the
history's P). They are the floor: a model that does not beat the best of them on NDCG@k is never promoted
(:func:`baseline_veto`); without ``cold_start`` among them a model could be promoted that makes the feeds worse
than serving none.

The model is judged as the feed uses it (:class:`ServedRanker`, row ``model``): its P combined with the user's
own P(bought again) from :mod:`ltvfeed.frames.history`, the P(purchase) term of the served score. The two-tower
alone is logged beside it (row ``two_tower``) for information, never as a baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.training.metrics import auc
from ltvfeed.training.propensity.data import AFFINITY_PREFIX, FeatureTables, LabelledPairs

log = logging.getLogger(__name__)

METRICS = ("auc", "ndcg", "recall")
# rows of the comparison that are the model: what is served (two-tower P with the history's P) first, then the
# two-tower alone, logged for information
MODEL_ROWS = ("model", "two_tower")
COLD_START = "cold_start"  # the floor row of what is served without a model (source ``category_affinity``)
_BLOCK = 1 << 22  # scores per block when ranking users x items


def metric_names(k: int) -> tuple[str, str, str]:
    return ("auc", f"ndcg_at_{k}", f"recall_at_{k}")


# --- ranking metrics (pure) -------------------------------------------------------------------------------


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """[n, min(k, m)] column positions of each row's k highest scores, best first; ties -> lower position."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [users, items], got shape {scores.shape}")
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def hits_at_k(top: np.ndarray, relevant_rows: np.ndarray, relevant_items: np.ndarray) -> np.ndarray:
    """[n, k] True where top[r, j] is one of row r's relevant items (given as (row, item) pairs)."""
    top = np.asarray(top, dtype=np.int64)
    rows = np.asarray(relevant_rows, dtype=np.int64)
    items = np.asarray(relevant_items, dtype=np.int64)
    width = int(max(top.max(initial=0), items.max(initial=0))) + 1
    relevant = np.unique(rows * width + items)
    keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * width + top
    if not len(relevant):
        return np.zeros(top.shape, dtype=bool)
    at = np.minimum(np.searchsorted(relevant, keys), len(relevant) - 1)
    return relevant[at] == keys


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """Mean over rows with n_relevant > 0 of DCG@k / ideal DCG@k, binary gains, discount 1 / log2(rank + 1)."""
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    k = hits.shape[1]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discount).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n_relevant, k)]
    scored = n_relevant > 0
    if not scored.any():
        return float("nan")
    return float((dcg[scored] / ideal[scored]).mean())


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> float:
    """Mean over rows with n_relevant > 0 of (relevant items in the top k) / n_relevant."""
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    scored = n_relevant > 0
    if not scored.any():
        return float("nan")
    return float((hits.sum(axis=1)[scored] / n_relevant[scored]).mean())


def feed_metrics(
    feeds: Mapping[str, list[str]], bought: Mapping[str, Mapping[str, float]], k: int = 10
) -> dict[str, float]:
    """NDCG@k, Recall@k and revenue@k of served feeds (user -> item ids, best first) against what each user
    bought afterwards (user -> {item: spend}), over the users who bought and have a feed; revenue@k is the
    user's later spend on the feed's first k items. The one implementation benches and training share."""
    users = [u for u in bought if feeds.get(u) is not None and len(bought[u])]
    vocab: dict[str, int] = {}
    top = np.full((len(users), k), -1, dtype=np.int64)
    rel_rows, rel_items, revenue = [], [], np.zeros(len(users))
    for r, u in enumerate(users):
        for j, item in enumerate(list(feeds[u])[:k]):
            top[r, j] = vocab.setdefault(item, len(vocab))
            revenue[r] += float(bought[u].get(item, 0.0))
        for item in bought[u]:
            rel_rows.append(r)
            rel_items.append(vocab.setdefault(item, len(vocab)))
    safe = np.where(top >= 0, top, len(vocab))  # padding: an id no user bought
    hits = hits_at_k(safe, np.array(rel_rows, dtype=np.int64), np.array(rel_items, dtype=np.int64))
    n_relevant = np.bincount(np.array(rel_rows, dtype=np.int64), minlength=len(users))
    return {
        f"ndcg_at_{k}": ndcg_at_k(hits, n_relevant),
        f"recall_at_{k}": recall_at_k(hits, n_relevant),
        f"revenue_at_{k}": float(revenue.mean()) if len(users) else float("nan"),
        "users": len(users),
    }


# --- the holdout ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holdout:
    """Out-of-time pairs (for AUC) and per-user bought items (for ranking) at one cutoff."""

    pairs: LabelledPairs
    users: np.ndarray  # user rows (in pairs.tables.users) that are ranked, ascending
    relevant_rows: np.ndarray  # position in ``users`` of each bought (user, item)
    relevant_items: np.ndarray  # item row of each bought (user, item)
    k: int

    @property
    def n_relevant(self) -> np.ndarray:
        return np.bincount(self.relevant_rows, minlength=len(self.users))

    @property
    def holdout_id(self) -> str:
        """Names what the metrics were computed on; equal ids = comparable metrics."""
        return f"purchases {self.pairs.tables.as_of.isoformat()} +{self.pairs.horizon_days}d"


def make_holdout(pairs: LabelledPairs, k: int, max_users: int, seed: int) -> Holdout:
    """Ranked users = users with a purchase in the window (a seeded sample of ``max_users`` when more)."""
    pos_u, pos_i = pairs.positives()
    buyers = np.unique(pos_u)
    if len(buyers) > max_users:
        buyers = np.sort(np.random.default_rng(seed).choice(buyers, size=max_users, replace=False))
    keep = np.isin(pos_u, buyers)
    return Holdout(pairs, buyers, np.searchsorted(buyers, pos_u[keep]), pos_i[keep], k)


class Ranker(Protocol):
    """Scores on the holdout's tables: per (user row, item row) pair, and for user rows x all items."""

    def pair_scores(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray: ...

    def block_scores(self, user_rows: np.ndarray) -> np.ndarray: ...


class ItemScoreRanker:
    """A non-personal ranker: one score per item row (popularity, commercial_score)."""

    def __init__(self, item_scores: np.ndarray) -> None:
        self.item_scores = np.nan_to_num(np.asarray(item_scores, dtype=np.float64), nan=0.0)

    def pair_scores(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        return self.item_scores[item_rows]

    def block_scores(self, user_rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_scores, (len(user_rows), len(self.item_scores)))


class ScorerRanker:
    """The model: a PropensityScorer whose rows are the holdout tables' rows."""

    def __init__(self, scorer) -> None:
        self.scorer = scorer

    def pair_scores(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        return self.scorer(np.asarray(user_rows), np.asarray(item_rows)[:, None])[:, 0]

    def block_scores(self, user_rows: np.ndarray) -> np.ndarray:
        # logits rank exactly like probabilities and skip the sigmoid on users x items
        return self.scorer.user_embeddings[user_rows] @ self.scorer.item_embeddings.T


def evaluate_ranker(ranker: Ranker, holdout: Holdout) -> dict[str, float]:
    """{auc, ndcg_at_k, recall_at_k} of one ranker on the holdout."""
    pairs = holdout.pairs
    n_items = len(pairs.tables.items)
    pair_scores = np.asarray(ranker.pair_scores(pairs.user_rows, pairs.item_rows), dtype=np.float64)
    step = max(1, _BLOCK // max(1, n_items))
    tops = []
    for start in range(0, len(holdout.users), step):
        block = np.asarray(ranker.block_scores(holdout.users[start : start + step]), dtype=np.float64)
        if block.shape != (min(step, len(holdout.users) - start), n_items):
            raise UserError(f"ranker returned scores of shape {block.shape} for {n_items} items")
        tops.append(top_k(block, holdout.k))
    top = np.concatenate(tops) if tops else np.zeros((0, holdout.k), dtype=np.int64)
    hits = hits_at_k(top, holdout.relevant_rows, holdout.relevant_items)
    name_auc, name_ndcg, name_recall = metric_names(holdout.k)
    return {
        name_auc: auc(pairs.labels, pair_scores),
        name_ndcg: ndcg_at_k(hits, holdout.n_relevant),
        name_recall: recall_at_k(hits, holdout.n_relevant),
    }


class PairValues:
    """Sparse per-(user row, item row) values over ``n_items`` columns; pairs not given read 0."""

    def __init__(self, n_items: int, user_rows, item_rows, values) -> None:
        self.n_items = n_items
        keys = np.asarray(user_rows, dtype=np.int64) * n_items + np.asarray(item_rows, dtype=np.int64)
        order = np.argsort(keys)
        self.keys, self.values = keys[order], np.asarray(values, dtype=np.float64)[order]

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        if not len(self.keys):
            return np.zeros(keys.shape)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[at] == keys, self.values[at], 0.0)

    def pairs(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        return self.lookup(np.asarray(user_rows, dtype=np.int64) * self.n_items + np.asarray(item_rows, dtype=np.int64))

    def block(self, user_rows: np.ndarray) -> np.ndarray:
        """[len(user_rows), n_items]."""
        return self.lookup(np.asarray(user_rows, dtype=np.int64)[:, None] * self.n_items + np.arange(self.n_items))


class BuyAgainRanker:
    """ "Buy it again": the user's own purchase counts (user row, item row, times), popularity breaking ties."""

    def __init__(self, n_users: int, popularity: np.ndarray, user_rows, item_rows, times) -> None:
        pop = np.nan_to_num(np.asarray(popularity, dtype=np.float64), nan=0.0)
        self.tie = pop / (pop.max() + 1.0)  # < 1: never outranks one purchase
        self.times = PairValues(len(pop), user_rows, item_rows, times)

    def pair_scores(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        return self.times.pairs(user_rows, item_rows) + self.tie[item_rows]

    def block_scores(self, user_rows: np.ndarray) -> np.ndarray:
        return self.times.block(user_rows) + self.tie


class ServedRanker:
    """What the feed ranks by: the model's P combined with P(bought again) from the user's own history
    (:func:`ltvfeed.frames.history.either_reason`); ``history`` holds P(bought again) per pair."""

    def __init__(self, scorer, history: PairValues) -> None:
        self.model = ScorerRanker(scorer)
        self.history = history

    def pair_scores(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        from ltvfeed.frames.history import either_reason

        return either_reason(self.model.pair_scores(user_rows, item_rows), self.history.pairs(user_rows, item_rows))

    def block_scores(self, user_rows: np.ndarray) -> np.ndarray:
        from ltvfeed.frames.history import either_reason

        p_model = 1.0 / (1.0 + np.exp(-np.asarray(self.model.block_scores(user_rows), dtype=np.float64)))
        return either_reason(p_model, self.history.block(user_rows))


class ColdStartRanker:
    """What generation ranks by with no model (``CategoryAffinitySource``): the same
    :class:`~ltvfeed.frames.propensity.CategoryAffinityPropensity`, over the tables' ``affinity__<category>``
    user columns and the items' categories, weighted within a category by ``popularity`` (pass the catalogue's
    recent orders, what generation weighs by), combined with ``history`` (P(bought again) per pair) by
    :func:`~ltvfeed.frames.history.either_reason`. Categories without an affinity column read 0."""

    def __init__(self, tables: FeatureTables, history: PairValues, popularity: np.ndarray | None = None) -> None:
        from ltvfeed.frames.inputs import Catalogue
        from ltvfeed.frames.propensity import CategoryAffinityPropensity

        items = tables.items
        catalogue = Catalogue(
            items["item_id"].to_numpy(),
            items["category"].to_numpy(),
            np.zeros(len(items)),
            popularity=tables.popularity if popularity is None else popularity,
        )
        users = tables.users
        columns = [f"{AFFINITY_PREFIX}{c}" for c in catalogue.category_names]
        missing = [c for c in columns if c not in users.columns]
        if missing:
            log.warning("cold_start: no affinity column for %d item categories (read as 0): %s", len(missing), missing)
        affinity = users.reindex(columns=columns, fill_value=0.0).fillna(0.0).to_numpy(dtype=np.float64)
        self.propensity = CategoryAffinityPropensity(affinity, catalogue)  # user rows = the tables' user rows
        self.n_items = len(items)
        self.history = history

    def pair_scores(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        from ltvfeed.frames.history import either_reason

        p = self.propensity(np.asarray(user_rows), np.asarray(item_rows)[:, None])[:, 0]
        return either_reason(p, self.history.pairs(user_rows, item_rows))

    def block_scores(self, user_rows: np.ndarray) -> np.ndarray:
        from ltvfeed.frames.history import either_reason

        user_rows = np.asarray(user_rows)
        p = self.propensity(user_rows, np.broadcast_to(np.arange(self.n_items), (len(user_rows), self.n_items)))
        return either_reason(p, self.history.block(user_rows))


def baselines(
    holdout: Holdout,
    history: pd.DataFrame | None = None,
    served_history: PairValues | None = None,
    recent_popularity: np.ndarray | None = None,
) -> dict[str, Ranker]:
    """The simple rankers every model is judged beside; ``history`` (user_id, item_id, times: purchases before
    the holdout's cutoff) adds ``buy_again``; ``served_history`` (P(bought again) per pair, as the model row
    gets it) adds ``cold_start``, its items weighed by ``recent_popularity`` (generation's catalogue's; default
    the tables' popularity)."""
    items = holdout.pairs.tables.items
    out: dict[str, Ranker] = {
        "popularity": ItemScoreRanker(items["popularity"].to_numpy()),
        "classic": ItemScoreRanker(items["commercial_score"].to_numpy()),
    }
    if history is not None:
        tables = holdout.pairs.tables
        u = tables.user_index.get_indexer(history["user_id"].astype(str))
        i = tables.item_index.get_indexer(history["item_id"].astype(str))
        ok = (u >= 0) & (i >= 0)
        times = history["times"].to_numpy(dtype=np.float64) if "times" in history else np.ones(len(history))
        out["buy_again"] = BuyAgainRanker(len(tables.users), items["popularity"].to_numpy(), u[ok], i[ok], times[ok])
    if served_history is not None:
        out[COLD_START] = ColdStartRanker(holdout.pairs.tables, served_history, recent_popularity)
    return out


def baseline_veto(table: pd.DataFrame, metric: str, model_rows: tuple[str, ...] = MODEL_ROWS) -> str | None:
    """Why the model must not be promoted (what is served, ``model_rows[0]``, does not strictly beat the best
    baseline on ``metric``: every other row, ``cold_start`` included), or None. The other model rows are for
    information, never a baseline."""
    model_row = model_rows[0]
    others = table.drop(index=[r for r in model_rows if r in table.index])[metric].dropna()
    if others.empty:
        return None
    best = str(others.idxmax())
    mine = float(table.loc[model_row, metric])
    if mine > float(others[best]):
        return None
    return f"loses to the {best} baseline on the out-of-time holdout ({metric} {mine:.4f} vs {float(others[best]):.4f})"


def compare(holdout: Holdout, rankers: Mapping[str, Ranker]) -> pd.DataFrame:
    """One row per ranker, columns auc / ndcg_at_k / recall_at_k."""
    rows = {name: evaluate_ranker(ranker, holdout) for name, ranker in rankers.items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(metric_names(holdout.k)))


def flat_metrics(table: pd.DataFrame, model_row: str = "model") -> dict[str, float]:
    """MLflow metric names: the model's as they are (auc, ndcg_at_10, ...), others as '<ranker>.<metric>'."""
    out = {}
    for name, row in table.iterrows():
        for metric, value in row.items():
            out[metric if name == model_row else f"{name}.{metric}"] = float(value)
    return out

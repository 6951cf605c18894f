"""Candidate generation: a few hundred plausible items per user, so that scoring (the propensity model, the
diversity loop) costs users x K instead of users x catalogue.

Sources, each vectorised over the whole user batch:

- ``history``: the user's own re-buyable purchases, likeliest to be bought again first (:mod:`.history`); it
  takes up to ``history_share`` of the K slots before the other sources;
- ``co_bought``: items bought in the same orders as the user's purchases (``Catalogue.co_bought``, learned from the
  shop's orders by :mod:`ltvfeed.warehouse.co_bought`), each scored by the sum over the user's purchases of the
  pair's score times the purchase's weight (times bought, halved every :data:`CO_BOUGHT_HALF_LIFE_DAYS` since
  the last purchase, when the batch carries the history); nothing without the catalogue's table;
- ``embedding``: top-K of user-embedding . item-embedding (a dense [batch, items] product here; for catalogues
  far beyond ~10^5 items an approximate-nearest-neighbour index would take its place behind the same output);
- ``category``: the best commercial performers of each user's ``top_categories`` favourite categories
  (category affinity given by the caller, else counted from the user's recent views and purchases);
- ``popular_now``: the items most ordered in the recent window (the same list for everyone);
- ``popular``: the catalogue's best commercial performers (the same list for everyone).

The other sources are merged round-robin (1st of each source, then 2nd of each...), so every available source
gets a fair share of the remaining slots, then deduplicated; out-of-stock and non-merchandise items
(``Catalogue.in_stock``) and items the user already bought (unless re-buyable) are removed before the cut to K.
"""

from __future__ import annotations

import numpy as np

from ltvfeed.frames.history import history_source
from ltvfeed.frames.inputs import Catalogue, UserBatch, rank_within
from ltvfeed.serving.config import CandidateConfig

# A purchase's weight in the co_bought source halves every this many days since it was last bought.
CO_BOUGHT_HALF_LIFE_DAYS = 30.0


def excluded_mask(users: UserBatch, catalogue: Catalogue, items: np.ndarray) -> np.ndarray:
    """[B, M] True where ``items[b, m]`` may not be shown to user b: padding, out of stock, or already bought
    (and not a repeat-purchase item)."""
    safe = np.where(items >= 0, items, 0)
    bad = (items < 0) | ~catalogue.in_stock[safe]
    rows, bought = _one_off_purchases(users, catalogue)
    if len(bought):
        n = catalogue.n_items
        keys = np.arange(len(users), dtype=np.int64)[:, None] * n + safe
        bought_keys = rows * n + bought  # ascending: purchase pairs are sorted by (row, item)
        at = np.minimum(np.searchsorted(bought_keys, keys), len(bought_keys) - 1)
        bad |= bought_keys[at] == keys
    return bad


def _one_off_purchases(users: UserBatch, catalogue: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    keep = ~catalogue.repeat_purchase[users.purchased_items]
    return users.purchased_rows[keep], users.purchased_items[keep]


def category_affinity(users: UserBatch, catalogue: Catalogue) -> np.ndarray:
    """[B, n_categories]: the caller's affinity, else counts of the categories of recent views and purchases."""
    if users.category_affinity is not None:
        return users.category_affinity
    counts = np.zeros((len(users), catalogue.n_categories))
    rows, cols = np.nonzero(users.recent_views >= 0)
    np.add.at(counts, (rows, catalogue.category[users.recent_views[rows, cols]]), 1.0)
    np.add.at(counts, (users.purchased_rows, catalogue.category[users.purchased_items]), 1.0)
    return counts


def _embedding_source(users: UserBatch, catalogue: Catalogue, k: int) -> np.ndarray | None:
    if users.embeddings is None or catalogue.embeddings is None:
        return None
    eligible, eligible_embeddings = catalogue.in_stock_embeddings()
    if len(eligible) == 0:
        return None
    scores = users.embeddings @ eligible_embeddings.T  # [B, in-stock items]
    rows, bought = _one_off_purchases(users, catalogue)
    column = np.full(catalogue.n_items, -1)
    column[eligible] = np.arange(len(eligible))
    stocked = column[bought] >= 0
    scores[rows[stocked], column[bought[stocked]]] = -np.inf
    k = min(k, len(eligible))
    top = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, -k:]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top = eligible[np.take_along_axis(top, order, axis=1)]
    top[~np.isfinite(np.take_along_axis(top_scores, order, axis=1))] = -1
    return top


def _co_bought_source(users: UserBatch, catalogue: Catalogue, k: int) -> np.ndarray | None:
    """[B, k]: eligible items co-bought with the user's purchases, highest summed score first (ties: lower
    index); None without the catalogue's table or any purchase."""
    table = catalogue.co_bought
    if table is None or not table.shape[1] or not len(users.purchased_items):
        return None
    weight = np.ones(len(users.purchased_items))
    if users.purchase_history is not None:
        times = np.maximum(np.nan_to_num(users.purchase_history[:, 0], nan=1.0), 1.0)
        last = np.maximum(np.nan_to_num(users.purchase_history[:, 1], nan=0.0), 0.0)
        weight = times * 0.5 ** (last / CO_BOUGHT_HALF_LIFE_DAYS)
    width = table.shape[1]
    rows = np.repeat(users.purchased_rows, width)
    items = table[users.purchased_items].ravel()  # [P * C]
    scores = (catalogue.co_bought_score[users.purchased_items] * weight[:, None]).ravel()
    safe = np.where(items >= 0, items, 0)
    ok = (items >= 0) & catalogue.in_stock[safe]
    rows, items, scores = rows[ok], items[ok], scores[ok]
    n = catalogue.n_items
    keys, at = np.unique(rows * n + items, return_inverse=True)  # one entry per (user, item), summed
    total = np.bincount(at, weights=scores, minlength=len(keys))
    one_off_rows, one_off = _one_off_purchases(users, catalogue)
    fresh = ~np.isin(keys, one_off_rows * n + one_off)  # bought and not re-buyable: never a candidate
    keys, total = keys[fresh], total[fresh]
    rows, items = keys // n, keys % n
    order = np.lexsort((items, -total, rows))
    rows, items = rows[order], items[order]
    rank = rank_within(rows)
    keep = rank < k
    out = np.full((len(users), k), -1, dtype=np.int64)
    out[rows[keep], rank[keep]] = items[keep]
    return out


def _category_source(users: UserBatch, catalogue: Catalogue, k: int, top_categories: int) -> np.ndarray | None:
    affinity = category_affinity(users, catalogue)
    m = min(top_categories, catalogue.n_categories)
    favourite = np.argsort(-affinity, axis=1, kind="stable")[:, :m]  # [B, m]
    liked = np.take_along_axis(affinity, favourite, axis=1) > 0
    per_category = -(-k // m)
    items = catalogue.category_top(per_category)[favourite]  # [B, m, per_category]
    items[~liked] = -1
    return items.transpose(0, 2, 1).reshape(len(users), -1)[:, :k]  # round-robin over the favourite categories


def _popular_source(users: UserBatch, catalogue: Catalogue, k: int) -> np.ndarray:
    return np.broadcast_to(catalogue.popular(k), (len(users), len(catalogue.popular(k))))


def _pad(items: np.ndarray, width: int) -> np.ndarray:
    if items.shape[1] >= width:
        return items[:, :width]
    return np.pad(items, ((0, 0), (0, width - items.shape[1])), constant_values=-1)


def merge_candidates(ranked_lists: list[np.ndarray], k: int, first: np.ndarray | None = None) -> np.ndarray:
    """Round-robin merge of [B, *] ranked lists into [B, k] distinct items (-1 = padding), earlier lists
    winning ties, after the items of ``first`` (a [B, *] list that goes before all of them); the result is
    sorted by item index (scores are computed afterwards)."""
    b = (first if first is not None else ranked_lists[0]).shape[0]
    parts = [np.stack([_pad(lst, k) for lst in ranked_lists], axis=2).reshape(b, -1)] if ranked_lists else []
    if first is not None:
        parts.insert(0, first)
    stacked = np.concatenate(parts, axis=1)  # priority order
    if stacked.shape[1] < k:
        stacked = _pad(stacked, k)
    n = np.iinfo(np.int64).max
    key = np.where(stacked >= 0, stacked, n)
    order = np.argsort(key, axis=1, kind="stable")  # equal items: earliest position first
    sorted_keys = np.take_along_axis(key, order, axis=1)
    dup_sorted = np.zeros_like(sorted_keys, dtype=bool)
    dup_sorted[:, 1:] = sorted_keys[:, 1:] == sorted_keys[:, :-1]
    duplicate = np.empty_like(dup_sorted)
    np.put_along_axis(duplicate, order, dup_sorted, axis=1)
    keep = (stacked >= 0) & ~duplicate
    keep &= np.cumsum(keep, axis=1) <= k
    chosen = np.where(keep, stacked, n)
    chosen = np.sort(chosen, axis=1)[:, :k]
    chosen[chosen == n] = -1
    return chosen


def generate_candidates(users: UserBatch, catalogue: Catalogue, cfg: CandidateConfig) -> np.ndarray:
    """[B, cfg.k] candidate item indices per user, distinct, eligible, ascending, padded with -1."""
    k = cfg.k
    lists: list[np.ndarray] = []
    first = None
    for source in cfg.sources:
        if source == "history":
            found = history_source(users, catalogue, int(cfg.history_share * k), cfg.history_horizon_days)
            if found is not None and found.shape[1]:
                first = np.where(excluded_mask(users, catalogue, found), -1, found)
            continue
        if source == "co_bought":
            found = _co_bought_source(users, catalogue, k)
        elif source == "embedding":
            found = _embedding_source(users, catalogue, k)
        elif source == "category":
            found = _category_source(users, catalogue, k, cfg.top_categories)
        elif source == "popular_now":
            top = catalogue.popular_now(k)
            found = np.broadcast_to(top, (len(users), len(top))) if len(top) else None
        else:
            found = _popular_source(users, catalogue, k)
        if found is not None:
            found = np.where(excluded_mask(users, catalogue, found), -1, found)
            lists.append(found)
    if not lists and first is None:
        return np.full((len(users), k), -1, dtype=np.int64)
    return merge_candidates(lists, k, first)

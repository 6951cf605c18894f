"""Item-to-item co-occurrence learned from the shop's orders: for each item, the items most often bought by the
same buyers, for the ``co_bought`` candidate source (:mod:`ltvfeed.serving.candidates`).

    score(a, b) = buyers of both a and b / sqrt(buyers of a * buyers of b)     (cosine)

Cosine, not the raw count: a best seller is bought by everyone, and the count alone would make it every item's
first neighbour (the ``popular`` sources already bring it). Pairs shared by fewer than :data:`MIN_CO_BUYERS`
buyers are dropped: one shared buyer says little, and cosine ranks such rare pairs first.

The unit is the buyer, not the single order: on the Instacart sample (a user's next order; k = 20 per user)
the buyer-level table found 114 of the 1,993 items users bought for the first time, the order-level one 29
(59 with pairs of >= 10 orders), "popular" 69.

Cost is bounded by what is read and by the items kept per buyer: the purchases are those the catalogue's learned
columns already read (:mod:`.generation_reads`: orders before the cutoff, within its ``HISTORY_DAYS``), and of a
buyer with more than :data:`MAX_BUYER_ITEMS` distinct items only that many are kept (most often bought first,
then the lower id), so pairs <= buyers x MAX_BUYER_ITEMS^2. The product is one sparse [items, buyers] x
[buyers, items] multiplication; the result is at most ``top`` neighbours per item.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from ltvfeed.frames.inputs import rank_within

CO_BOUGHT_TOP = 20  # neighbours kept per item (the width of Catalogue.co_bought)
MIN_CO_BUYERS = 2  # a pair must share at least this many buyers
MAX_BUYER_ITEMS = 100  # a buyer's most bought items that count
CO_BOUGHT_COLUMNS = ("co_bought", "co_bought_score")  # the catalogue frame's columns: tuples of ids / scores


def co_bought_table(
    purchases: pd.DataFrame,
    top: int = CO_BOUGHT_TOP,
    *,
    min_buyers: int = MIN_CO_BUYERS,
    max_buyer_items: int = MAX_BUYER_ITEMS,
) -> pd.DataFrame:
    """From purchases (``user_id``, ``item_id`` and optionally ``times`` bought, else 1 per row; repeated pairs
    are summed), each item's ``top`` co-bought items, best first: a frame indexed by ``item_id`` with columns
    ``co_bought`` (tuple of item ids) and ``co_bought_score`` (tuple of their cosine scores). Items without a
    neighbour are absent; ties go to the lower item id."""
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in CO_BOUGHT_COLUMNS})
    empty.index.name = "item_id"
    if not len(purchases):
        return empty
    times = purchases["times"] if "times" in purchases.columns else pd.Series(1.0, index=purchases.index)
    pairs = pd.DataFrame(
        {
            "user_id": purchases["user_id"].astype(str).to_numpy(),
            "item_id": purchases["item_id"].astype(str).to_numpy(),
            "times": pd.to_numeric(times, errors="coerce").fillna(1.0).to_numpy(np.float64),
        }
    )
    pairs = pairs.groupby(["user_id", "item_id"], as_index=False, sort=True)["times"].sum()
    pairs = pairs.sort_values(["user_id", "times", "item_id"], ascending=[True, False, True], kind="stable")
    pairs = pairs[pairs.groupby("user_id").cumcount().to_numpy() < max_buyer_items]
    buyers, buyer_codes = np.unique(pairs["user_id"].to_numpy(), return_inverse=True)
    items, item_codes = np.unique(pairs["item_id"].to_numpy(), return_inverse=True)
    x = sparse.csr_matrix(
        (np.ones(len(pairs), dtype=np.float64), (buyer_codes, item_codes)), shape=(len(buyers), len(items))
    )
    both = (x.T @ x).tocoo()  # [items, items]: buyers of both
    counts = np.asarray(x.sum(axis=0)).ravel()  # buyers of each item
    a, b, n = both.row, both.col, both.data
    keep = (a != b) & (n >= min_buyers)
    a, b, n = a[keep], b[keep], n[keep]
    if not len(a):
        return empty
    score = n / np.sqrt(counts[a] * counts[b])
    order = np.lexsort((b, -score, a))  # per item: best first, ties to the lower id (ids are sorted)
    a, b, score = a[order], b[order], score[order]
    keep = rank_within(a) < top
    a, b, score = a[keep], b[keep], score[keep]
    bounds = np.flatnonzero(np.diff(a)) + 1
    return pd.DataFrame(
        {
            "co_bought": [tuple(v) for v in np.split(items[b], bounds)],
            "co_bought_score": [tuple(float(s) for s in v) for v in np.split(score, bounds)],
        },
        index=pd.Index(items[a[np.r_[0, bounds]]], name="item_id"),
    )


def with_co_bought(items: pd.DataFrame, purchases: pd.DataFrame, top: int = CO_BOUGHT_TOP) -> pd.DataFrame:
    """``items`` (a catalogue frame with ``item_id``) with the columns ``co_bought`` / ``co_bought_score`` of
    :func:`co_bought_table` over ``purchases`` (empty tuples for items without a neighbour)."""
    table = co_bought_table(purchases, top).reindex(items["item_id"].astype(str).to_numpy())
    out = items.copy()
    for column in CO_BOUGHT_COLUMNS:
        out[column] = [v if isinstance(v, tuple) else () for v in table[column]]
    return out

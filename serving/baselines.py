"""The simple feeds every personalised feed is judged beside (and falls back to): "popular now" (the items most
ordered in the recent window, the same for everyone) and "buy it again" (the user's own purchases, most often
bought first, then most recently; filled up with "popular now"). Only recommendable, in-stock items, like every
other feed; vectorised over a :class:`UserBatch`."""

from __future__ import annotations

import numpy as np

from ltvfeed.frames.inputs import Catalogue, UserBatch

BASELINES = ("popular_now", "buy_again")


def popular_now_items(catalogue: Catalogue, n: int) -> np.ndarray:
    """[n'] the most ordered eligible items of the recent window (commercial performance where none were)."""
    top = catalogue.popular_now(n)
    if len(top) < n:
        rest = catalogue.popular(n + len(top))
        top = np.concatenate([top, rest[~np.isin(rest, top)]])[:n]
    return top


def buy_again_items(users: UserBatch, catalogue: Catalogue, n: int) -> np.ndarray:
    """[B, n] each user's bought eligible items by times bought (desc), then days since last purchase (asc),
    then "popular now"; -1 = padding."""
    b = len(users)
    rows, items = users.purchased_rows, users.purchased_items
    if users.purchase_history is not None:
        times, last = users.purchase_history[:, 0], users.purchase_history[:, 1]
    else:
        times, last = np.ones(len(items)), np.zeros(len(items))
    ok = catalogue.in_stock[items]
    rows, items, times, last = rows[ok], items[ok], times[ok], last[ok]
    order = np.lexsort((items, last, -times, rows))
    rows, items = rows[order], items[order]
    starts = np.searchsorted(rows, np.arange(b))
    rank = np.arange(len(rows)) - starts[rows]
    width = n + n  # own items, then popular ones (deduplicated below)
    out = np.full((b, width), -1, dtype=np.int64)
    keep = rank < n
    out[rows[keep], rank[keep]] = items[keep]
    popular = popular_now_items(catalogue, n)
    filled = np.full((b, n), -1, dtype=np.int64)
    for r in range(b):  # n small lists per user: fine for a baseline (benches, fallback)
        own = out[r][out[r] >= 0]
        merged = np.concatenate([own, popular[~np.isin(popular, own)]])[:n]
        filled[r, : len(merged)] = merged
    return filled

"""The scorer's inputs as arrays: the catalogue (one row per item) and a batch of users (one row per user).

Everything is converted once into integer item indices and dense/padded numpy arrays, so that scoring is
vectorised over users and candidates; the builders accept DataFrames (as the warehouse delivers them) or
plain lists (tests, small tools).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ltvfeed.errors import UserError

CLASSIC_USER_ID = "__classic__"
# An item counts as re-buyable (shown again after it was bought) when at least this share of its buyers bought it
# on more than one order; the flag is_repeat_purchase still marks an item re-buyable on its own.
MIN_REPEAT_RATE = 0.05
HISTORY_COLUMNS = ("times", "last_days", "first_days")


def non_merchandise(categories: Sequence[Any] | np.ndarray, patterns: Sequence[str]) -> np.ndarray:
    """True where a category matches one of the settings' non-merchandise ``patterns`` (names or shell
    patterns such as ``gift*``, case insensitive)."""
    names = [str(c).lower() for c in categories]
    rules = [str(p).lower() for p in patterns]
    return np.array([any(fnmatch.fnmatchcase(n, r) for r in rules) for n in names], dtype=bool)


def normalise_commercial(values: np.ndarray) -> np.ndarray:
    """Commercial performance in [0, 1], so that the score weights mean what they say: the warehouse's
    ``commercial_score`` is already there and kept; any other measure (revenue, units...) is min-max scaled over
    the whole catalogue (one whose values are all equal and outside [0, 1] carries no information: 0.5)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise UserError(f"commercial performance has {bad} missing or infinite value(s); fill them upstream")
    if values.size == 0 or (values.min() >= 0.0 and values.max() <= 1.0):
        return values.copy()
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        return np.full_like(values, 0.5)
    return (values - lo) / (hi - lo)


def _as_float_matrix(values: Any, name: str, rows: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != rows:
        raise UserError(f"{name} must have shape ({rows}, dim), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise UserError(f"{name} contains NaN or infinite values")
    return arr


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


class Catalogue:
    """All items that may be recommended, with what scoring needs about each.

    ``commercial`` is normalised on construction (see :func:`normalise_commercial`). Items out of stock or
    not ``recommendable`` (fees, coupons: non-merchandise) stay in the catalogue (they may be in users' histories)
    but are never candidates of any source: ``in_stock`` holds both. ``embeddings`` (optional) feed both the
    embedding retrieval (dot product with user embeddings) and the diversity similarity (cosine).

    Learned from the shop's orders (optional): ``repeat_rate`` (share of an item's buyers who bought it on more
    than one order; at least :data:`MIN_REPEAT_RATE` makes an item re-buyable, like the flag), ``cycle_days``
    (the item's typical days between two purchases by one buyer, NaN unknown) and ``popularity`` (orders in a
    recent window: the "popular now" candidates) and ``co_bought`` [n_items, C] (each item's most co-bought
    items, best first, -1 = padding; with ``co_bought_score`` [n_items, C], the pair's score, default 1: the
    ``co_bought`` candidates; None: that source finds nothing).
    """

    def __init__(
        self,
        item_ids: Sequence[str] | np.ndarray,
        category: Sequence[Any] | np.ndarray,
        commercial: Sequence[float] | np.ndarray,
        in_stock: Sequence[bool] | np.ndarray | None = None,
        repeat_purchase: Sequence[bool] | np.ndarray | None = None,
        embeddings: np.ndarray | None = None,
        *,
        recommendable: Sequence[bool] | np.ndarray | None = None,
        repeat_rate: Sequence[float] | np.ndarray | None = None,
        cycle_days: Sequence[float] | np.ndarray | None = None,
        popularity: Sequence[float] | np.ndarray | None = None,
        co_bought: np.ndarray | None = None,
        co_bought_score: np.ndarray | None = None,
    ) -> None:
        self.item_ids = np.asarray(item_ids, dtype=object).astype(str).astype(object)
        n = len(self.item_ids)
        if n == 0:
            raise UserError("the catalogue is empty")
        self._index = pd.Index(self.item_ids)
        if not self._index.is_unique:
            dupes = self._index[self._index.duplicated()].unique()[:5].tolist()
            raise UserError(f"catalogue item ids must be unique; duplicated: {dupes}")
        category = np.asarray(category, dtype=object)
        if len(category) != n or pd.isna(category).any():
            raise UserError(f"category must give one non-null value per item ({n})")
        self.category_names, self.category = np.unique(category.astype(str), return_inverse=True)
        self.category = self.category.astype(np.int64)
        self.commercial_raw = np.asarray(commercial, dtype=np.float64)
        if self.commercial_raw.shape != (n,):
            raise UserError(f"commercial must give one value per item ({n}), got shape {self.commercial_raw.shape}")
        self.commercial = normalise_commercial(self.commercial_raw)
        self.recommendable = self._flags(recommendable, True, "recommendable", n)
        self.in_stock = self._flags(in_stock, True, "in_stock", n) & self.recommendable
        self.repeat_rate = self._numbers(repeat_rate, 0.0, "repeat_rate", n).clip(0.0, 1.0)
        self.cycle_days = self._numbers(cycle_days, np.nan, "cycle_days", n)
        self.popularity = self._numbers(popularity, 0.0, "popularity", n)
        self.repeat_purchase = self._flags(repeat_purchase, False, "repeat_purchase", n) | (
            self.repeat_rate >= MIN_REPEAT_RATE
        )
        self.embeddings = None if embeddings is None else _as_float_matrix(embeddings, "item embeddings", n)
        self.unit_embeddings = None if self.embeddings is None else _unit_rows(self.embeddings)
        self.co_bought, self.co_bought_score = _co_bought(co_bought, co_bought_score, n)
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._matrices: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def _flags(values: Any, default: bool, name: str, n: int) -> np.ndarray:
        if values is None:
            return np.full(n, default)
        arr = np.asarray(values)
        if arr.shape != (n,) or pd.isna(arr).any():
            raise UserError(f"{name} must give one true/false value per item ({n})")
        return arr.astype(bool)

    @staticmethod
    def _numbers(values: Any, default: float, name: str, n: int) -> np.ndarray:
        if values is None:
            return np.full(n, default, dtype=np.float64)
        arr = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce").to_numpy(np.float64)
        if arr.shape != (n,):
            raise UserError(f"{name} must give one number per item ({n})")
        return np.where(np.isnan(arr), default, arr)

    @classmethod
    def from_frame(cls, items: pd.DataFrame, embeddings: np.ndarray | None = None) -> Catalogue:
        """From a frame with ``item_id``, ``category``, ``commercial_score`` and optionally ``in_stock``,
        ``is_repeat_purchase``, ``recommendable``, ``repeat_rate``, ``cycle_days``, ``popularity``, ``co_bought``
        (per item a sequence of item ids, best first; ids not in the frame are dropped) with ``co_bought_score``
        (the warehouse's column names); ``embeddings`` rows follow the frame's rows."""
        missing = [c for c in ("item_id", "category", "commercial_score") if c not in items.columns]
        if missing:
            raise UserError(f"catalogue frame lacks column(s) {missing}; has {list(items.columns)}")
        return cls(
            item_ids=items["item_id"].to_numpy(),
            category=items["category"].to_numpy(),
            commercial=items["commercial_score"].to_numpy(dtype=np.float64),
            in_stock=items["in_stock"].to_numpy() if "in_stock" in items.columns else None,
            repeat_purchase=items["is_repeat_purchase"].to_numpy() if "is_repeat_purchase" in items.columns else None,
            embeddings=embeddings,
            **_co_bought_from_frame(items),
            **{
                name: items[name].to_numpy()
                for name in ("recommendable", "repeat_rate", "cycle_days", "popularity")
                if name in items.columns
            },
        )

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_categories(self) -> int:
        return len(self.category_names)

    def indices(self, item_ids: Sequence[str] | np.ndarray | pd.Series) -> np.ndarray:
        """Row index of each item id, -1 for ids not in the catalogue."""
        return self._index.get_indexer(pd.Index(np.asarray(item_ids, dtype=object).astype(str)))

    def category_codes(self, names: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """Code of each category name, -1 for categories no item has."""
        return pd.Index(self.category_names).get_indexer(pd.Index(np.asarray(names, dtype=object).astype(str)))

    def popular(self, k: int) -> np.ndarray:
        """The ``k`` in-stock items with the best commercial performance, best first (ties: lower index)."""
        key = ("popular", k)
        if key not in self._cache:
            eligible = np.flatnonzero(self.in_stock)
            order = np.lexsort((eligible, -self.commercial[eligible]))
            self._cache[key] = eligible[order[:k]]
        return self._cache[key]

    def popular_now(self, k: int) -> np.ndarray:
        """The ``k`` eligible items most ordered recently (``popularity``), best first; empty without it."""
        key = ("popular_now", k)
        if key not in self._cache:
            eligible = np.flatnonzero(self.in_stock & (self.popularity > 0))
            order = np.lexsort((eligible, -self.popularity[eligible]))
            self._cache[key] = eligible[order[:k]]
        return self._cache[key]

    def in_stock_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices, embeddings) of the in-stock items: retrieval only ever needs these."""
        if "in_stock" not in self._matrices:
            eligible = np.flatnonzero(self.in_stock)
            self._matrices["in_stock"] = (eligible, np.ascontiguousarray(self.embeddings[eligible]))
        return self._matrices["in_stock"]

    def category_top(self, k: int) -> np.ndarray:
        """[n_categories, k]: each category's best ``k`` in-stock items, best first, padded with -1."""
        key = ("category_top", k)
        if key not in self._cache:
            eligible = np.flatnonzero(self.in_stock)
            cat = self.category[eligible]
            order = np.lexsort((eligible, -self.commercial[eligible], cat))
            items, cats = eligible[order], cat[order]
            starts = np.searchsorted(cats, np.arange(self.n_categories))
            rank = np.arange(len(items)) - starts[cats]
            table = np.full((self.n_categories, k), -1, dtype=np.int64)
            keep = rank < k
            table[cats[keep], rank[keep]] = items[keep]
            self._cache[key] = table
        return self._cache[key]


@dataclass(frozen=True)
class UserBatch:
    """Users scored together. Row ``b`` of every array describes ``user_ids[b]``.

    - ``recent_views`` [B, V]: catalogue indices of recently viewed items, most recent first, -1 = padding;
    - ``purchased_rows`` / ``purchased_items`` [P]: distinct (row, item) pairs of past purchases, sorted by
      row then item (exclusion relies on that order);
    - ``category_affinity`` [B, n_categories] (optional): how much each user likes each category (>= 0);
    - ``embeddings`` [B, dim] (optional): user embeddings for dot-product retrieval against item embeddings;
    - ``user_index`` [B]: the users' rows in the propensity model's user table (what it is called with);
    - ``purchase_history`` (optional) [P, 3], aligned with the purchase pairs: times bought (orders), days from
      the last and from the first purchase to the cutoff (what the history ranking reads).
    """

    user_ids: np.ndarray
    recent_views: np.ndarray
    purchased_rows: np.ndarray
    purchased_items: np.ndarray
    category_affinity: np.ndarray | None
    embeddings: np.ndarray | None
    user_index: np.ndarray
    purchase_history: np.ndarray | None = None

    def __post_init__(self) -> None:
        b = len(self.user_ids)
        if self.recent_views.ndim != 2 or self.recent_views.shape[0] != b or self.user_index.shape != (b,):
            raise UserError(f"recent_views must be [{b}, V] and user_index [{b}] for {b} users")
        rows = np.asarray(self.purchased_rows, dtype=np.int64)
        items = np.asarray(self.purchased_items, dtype=np.int64)
        if rows.shape != items.shape or (len(rows) and (rows.min() < 0 or rows.max() >= b or items.min() < 0)):
            raise UserError("purchased_rows / purchased_items must be equally long, rows within the batch, items >= 0")
        history = self.purchase_history
        if history is not None:
            history = np.asarray(history, dtype=np.float64)
            if history.shape != (len(rows), len(HISTORY_COLUMNS)):
                raise UserError(f"purchase_history must be [{len(rows)}, {len(HISTORY_COLUMNS)}] (one row per pair)")
        keys = rows * (int(items.max(initial=0)) + 1) + items
        if len(keys) > 1 and not (np.diff(keys) > 0).all():  # the documented order, whatever the caller gave
            order = np.unique(keys, return_index=True)[1]
            rows, items = rows[order], items[order]
            history = None if history is None else history[order]
        object.__setattr__(self, "purchased_rows", rows)
        object.__setattr__(self, "purchased_items", items)
        object.__setattr__(self, "purchase_history", history)

    def __len__(self) -> int:
        return len(self.user_ids)

    def slice(self, start: int, stop: int) -> UserBatch:
        """Rows ``start:stop`` as a batch of their own (used to bound memory per scoring step)."""
        lo, hi = np.searchsorted(self.purchased_rows, [start, stop])
        return UserBatch(
            user_ids=self.user_ids[start:stop],
            recent_views=self.recent_views[start:stop],
            purchased_rows=self.purchased_rows[lo:hi] - start,
            purchased_items=self.purchased_items[lo:hi],
            category_affinity=None if self.category_affinity is None else self.category_affinity[start:stop],
            embeddings=None if self.embeddings is None else self.embeddings[start:stop],
            user_index=self.user_index[start:stop],
            purchase_history=None if self.purchase_history is None else self.purchase_history[lo:hi],
        )

    @classmethod
    def anonymous(cls, user_id: str = CLASSIC_USER_ID) -> UserBatch:
        """One user with no history: the non-personal (classic) feed."""
        empty = np.zeros(0, dtype=np.int64)
        return cls(
            user_ids=np.array([user_id], dtype=object),
            recent_views=np.zeros((1, 0), dtype=np.int64),
            purchased_rows=empty,
            purchased_items=empty,
            category_affinity=None,
            embeddings=None,
            user_index=np.zeros(1, dtype=np.int64),
        )

    @classmethod
    def from_frames(
        cls,
        catalogue: Catalogue,
        user_ids: Sequence[str] | np.ndarray | pd.Series,
        *,
        views: pd.DataFrame | None = None,
        purchases: pd.DataFrame | None = None,
        category_affinity: pd.DataFrame | np.ndarray | None = None,
        embeddings: np.ndarray | None = None,
        user_index: Sequence[int] | np.ndarray | None = None,
        max_recent_views: int = 20,
    ) -> UserBatch:
        """Build a batch from long frames.

        ``views``: ``user_id``, ``item_id`` and optionally ``viewed_at`` (without it, rows are taken as most
        recent first); only each user's ``max_recent_views`` most recent distinct items are kept.
        ``purchases``: ``user_id``, ``item_id`` and optionally :data:`HISTORY_COLUMNS` (``times`` bought,
        ``last_days`` / ``first_days`` before the cutoff; repeated pairs are summed / min / max).
        ``category_affinity``: a [B, n_categories] array or a frame
        ``user_id``, ``category``, ``affinity``. Items and categories unknown to the catalogue, and users not in
        ``user_ids``, are ignored (an item may have left the catalogue since it was bought).
        """
        ids = np.asarray(user_ids, dtype=object).astype(str).astype(object)
        index = pd.Index(ids)
        if not index.is_unique:
            raise UserError("user ids in a batch must be unique")
        b = len(ids)
        recent = np.full((b, max_recent_views), -1, dtype=np.int64)
        if views is not None and len(views) and max_recent_views:
            rows, items = _pairs(views, index, catalogue, "views")
            frame = pd.DataFrame({"row": rows, "item": items})
            if "viewed_at" in views.columns:
                frame["at"] = views["viewed_at"].to_numpy()
            frame = frame[(frame["row"] >= 0) & (frame["item"] >= 0)]
            if "at" in frame.columns:
                frame = frame.sort_values("at", ascending=False, kind="stable")
            frame = frame.drop_duplicates(["row", "item"], keep="first")
            rank = frame.groupby("row", sort=False).cumcount().to_numpy()
            keep = rank < max_recent_views
            recent[frame["row"].to_numpy()[keep], rank[keep]] = frame["item"].to_numpy()[keep]
        p_rows = p_items = np.zeros(0, dtype=np.int64)
        history = None
        if purchases is not None and len(purchases):
            rows, items = _pairs(purchases, index, catalogue, "purchases")
            ok = (rows >= 0) & (items >= 0)
            if all(c in purchases.columns for c in HISTORY_COLUMNS):
                frame = pd.DataFrame({"row": rows, "item": items})
                for c in HISTORY_COLUMNS:
                    frame[c] = pd.to_numeric(purchases[c], errors="coerce").to_numpy(np.float64)
                grouped = frame[ok].groupby(["row", "item"], sort=True)
                agg = grouped.agg(
                    times=("times", "sum"), last_days=("last_days", "min"), first_days=("first_days", "max")
                )
                p_rows = agg.index.get_level_values(0).to_numpy(np.int64)
                p_items = agg.index.get_level_values(1).to_numpy(np.int64)
                history = agg[list(HISTORY_COLUMNS)].to_numpy(np.float64)
            else:
                pairs = np.unique(np.stack([rows[ok], items[ok]], axis=1), axis=0)
                p_rows, p_items = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        affinity = None
        if category_affinity is not None:
            affinity = _affinity(category_affinity, index, catalogue)
        if embeddings is not None:
            embeddings = _as_float_matrix(embeddings, "user embeddings", b)
            if catalogue.embeddings is not None and embeddings.shape[1] != catalogue.embeddings.shape[1]:
                raise UserError(
                    f"user embeddings have dim {embeddings.shape[1]}, item embeddings {catalogue.embeddings.shape[1]}"
                )
        if user_index is None:
            uidx = np.arange(b, dtype=np.int64)
        else:
            uidx = np.asarray(user_index, dtype=np.int64)
            if uidx.shape != (b,):
                raise UserError(f"user_index must give one index per user ({b}), got shape {uidx.shape}")
        return cls(ids, recent, p_rows, p_items, affinity, embeddings, uidx, history)

    @classmethod
    def from_lists(
        cls,
        catalogue: Catalogue,
        user_ids: Sequence[str],
        *,
        recent_views: Sequence[Sequence[str]] | None = None,
        purchased: Sequence[Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> UserBatch:
        """Convenience for small batches: per-user lists of item ids (recent views most recent first)."""

        def long(lists: Sequence[Sequence[str]] | None, name: str) -> pd.DataFrame | None:
            if lists is None:
                return None
            if len(lists) != len(user_ids):
                raise UserError(f"{name} must have one list per user ({len(user_ids)}), got {len(lists)}")
            return pd.DataFrame(
                [(u, i) for u, seq in zip(user_ids, lists, strict=True) for i in seq], columns=["user_id", "item_id"]
            )

        return cls.from_frames(
            catalogue,
            user_ids,
            views=long(recent_views, "recent_views"),
            purchases=long(purchased, "purchased"),
            **kwargs,
        )


def _co_bought(
    table: np.ndarray | None, scores: np.ndarray | None, n: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if table is None:
        return None, None
    table = np.asarray(table, dtype=np.int64)
    if table.ndim != 2 or table.shape[0] != n or (table.size and (table.min() < -1 or table.max() >= n)):
        raise UserError(f"co_bought must be [{n}, C] item indices (-1 = padding), got shape {table.shape}")
    if scores is None:
        scores = np.ones(table.shape)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != table.shape or not np.isfinite(scores).all():
        raise UserError(f"co_bought_score must be finite numbers of co_bought's shape {table.shape}")
    return table, np.where(table >= 0, scores, 0.0)


def _co_bought_from_frame(items: pd.DataFrame) -> dict[str, np.ndarray]:
    """``co_bought`` / ``co_bought_score`` columns (sequences of item ids / scores) as [n, C] arrays."""
    if "co_bought" not in items.columns:
        return {}
    lists = [_sequence(v) for v in items["co_bought"]]
    if "co_bought_score" in items.columns:
        score_lists = [_sequence(v) for v in items["co_bought_score"]]
    else:
        score_lists = [np.ones(len(v)) for v in lists]
    lengths = np.array([len(v) for v in lists], dtype=np.int64)
    if any(len(s) != m for s, m in zip(score_lists, lengths, strict=True)):
        raise UserError("co_bought_score must give one score per co_bought item")
    width = int(lengths.max(initial=0))
    table = np.full((len(items), width), -1, dtype=np.int64)
    scores = np.zeros((len(items), width))
    if width:
        index = pd.Index(items["item_id"].astype(str).to_numpy())
        rows = np.repeat(np.arange(len(items)), lengths)
        found = index.get_indexer(pd.Index([str(i) for v in lists for i in v]))
        flat_scores = np.array([float(x) for v in score_lists for x in v], dtype=np.float64)
        ok = found >= 0
        # ids unknown to this frame are dropped; the rest move left so each row stays best first
        rank = rank_within(rows[ok])
        table[rows[ok], rank] = found[ok]
        scores[rows[ok], rank] = flat_scores[ok]
    return {"co_bought": table, "co_bought_score": scores}


def _sequence(value: Any) -> Sequence[Any] | np.ndarray:
    """A cell of a list column: its sequence, or empty (None, NaN: no entries)."""
    return value if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str) else ()


def rank_within(rows: np.ndarray) -> np.ndarray:
    """0, 1, 2... within each run of equal, ascending ``rows`` (position in its group of a sorted key)."""
    starts = np.searchsorted(rows, rows)
    return np.arange(len(rows)) - starts


def _pairs(frame: pd.DataFrame, users: pd.Index, catalogue: Catalogue, name: str) -> tuple[np.ndarray, np.ndarray]:
    missing = [c for c in ("user_id", "item_id") if c not in frame.columns]
    if missing:
        raise UserError(f"{name} frame lacks column(s) {missing}; has {list(frame.columns)}")
    rows = users.get_indexer(pd.Index(frame["user_id"].astype(str)))
    return rows.astype(np.int64), catalogue.indices(frame["item_id"].to_numpy()).astype(np.int64)


def _affinity(values: pd.DataFrame | np.ndarray, users: pd.Index, catalogue: Catalogue) -> np.ndarray:
    shape = (len(users), catalogue.n_categories)
    if isinstance(values, pd.DataFrame):
        missing = [c for c in ("user_id", "category", "affinity") if c not in values.columns]
        if missing:
            raise UserError(f"category_affinity frame lacks column(s) {missing}; has {list(values.columns)}")
        rows = users.get_indexer(pd.Index(values["user_id"].astype(str)))
        cats = catalogue.category_codes(values["category"].to_numpy())
        vals = values["affinity"].to_numpy(dtype=np.float64)
        ok = (rows >= 0) & (cats >= 0)
        matrix = np.zeros(shape)
        np.add.at(matrix, (rows[ok], cats[ok]), vals[ok])
    else:
        matrix = np.asarray(values, dtype=np.float64)
        if matrix.shape != shape:
            raise UserError(f"category_affinity must have shape {shape} (users, categories), got {matrix.shape}")
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        raise UserError("category_affinity must be finite and >= 0")
    return matrix

"""Point-in-time training sets for purchase propensity: who bought what after a cutoff, what was known before it.

For a cutoff T and a horizon h:

- positives are the distinct (user, item) pairs bought in [T, T + h) (raw.order_items joined to raw.orders,
  ids trimmed exactly as dbt's staging does, so they match the marts);
- negatives are drawn per positive from the item table with P(item) ~ (orders in the look-back + 1) ** power:
  popular items are the hard negatives a ranking must beat, the +1 keeps every item possible; a pair the user
  bought in the window is never drawn;
- user features are the snapshot for as_of T: the Feast ``ltv_model`` service through ``training_frame``
  (default) or the same columns read from marts.user_features, plus the user's category propensities
  (marts.user_category_propensity, one ``affinity__<category>`` column per category), what their purchases of
  the year before T say (one ``spend_share__<category>`` column per category and ``log_price_paid``: the
  history terms of the model) and, when LTV batch scoring scored that snapshot, the LTV model's predictions
  (``ltv_prob_return``, ``ltv_expected`` from marts.user_ltv_predictions);
- item features are marts.item_performance for as_of T plus the item's orders in the look-back (``popularity``).

Users or items without a snapshot at T (signed up / listed after it) cannot be featurised for T and are left out
of that cutoff's pairs; the counts are reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ltvfeed.cutoff import cutoff_instant
from ltvfeed.errors import UserError
from ltvfeed.warehouse.propensity_reads import (
    POPULARITY,
    category_propensity,
    item_snapshot,
    ltv_predictions,
    purchases,
    spend_by_category,
    user_snapshot,
)

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack
    from ltvfeed.training.propensity.config import PropensityConfig

log = logging.getLogger(__name__)

USER_KEY = "user_id"
ITEM_KEY = "item_id"
AFFINITY_PREFIX = "affinity__"
SPEND_SHARE_PREFIX = "spend_share__"  # share of the user's spend in each category (the history terms' first part)
PRICE_PAID = "log_price_paid"  # mean ln(unit price) the user paid, per unit (NaN: no priced purchase)
SPEND_DAYS = 365  # look-back of both, as the category mart's purchases_365d
LTV_COLUMNS = {"prob_return": "ltv_prob_return", "expected_ltv": "ltv_expected"}
USER_SERVICE = "ltv_model"  # the Feast service with every per-customer feature

# marts.item_performance columns the model reads. in_stock is left out on purpose: it is current state (not as
# of the cutoff) and serving filters on it anyway.
ITEM_COLUMNS = (
    "category",
    "price",
    "is_repeat_purchase",
    "in_catalog",
    "views_30d",
    "clicks_30d",
    "add_to_cart_30d",
    "add_to_cart_rate_30d",
    "conversions_30d",
    "units_sold_30d",
    "revenue_30d",
    "views_decayed",
    "clicks_decayed",
    "add_to_cart_decayed",
    "add_to_cart_rate_decayed",
    "conversions_decayed",
    "revenue_decayed",
    "commercial_score",
)


def load_items(dsn: str, as_of: date, popularity_days: int) -> pd.DataFrame:
    """Item features as of ``as_of`` (one row per item, sorted by item_id) with ``popularity``: orders containing
    the item in the ``popularity_days`` before the cutoff."""
    items = item_snapshot(dsn, as_of, ITEM_COLUMNS, popularity_days)
    items["category"] = items["category"].astype(str)
    return items.reset_index(drop=True)


def user_feature_names() -> list[str]:
    """The Feast ``ltv_model`` service's feature names (the definitions, no database needed)."""
    from ltvfeed.features import load_definitions

    service = next((s for s in load_definitions().feature_services if s.name == USER_SERVICE), None)
    if service is None:
        raise UserError(f"feature_repo/ defines no feature service {USER_SERVICE!r}")
    return [f.name for p in service.feature_view_projections for f in p.features]


def _user_base(stack: Stack, as_of: date, source: str) -> pd.DataFrame:
    names = user_feature_names()
    if source == "marts":
        return user_snapshot(stack.warehouse_dsn, as_of, names)
    from ltvfeed.features import training_frame

    ids = user_snapshot(stack.warehouse_dsn, as_of, ())
    entity_df = pd.DataFrame({USER_KEY: ids[USER_KEY].astype(str), "event_timestamp": cutoff_instant(as_of)})
    return training_frame(stack, entity_df, service=USER_SERVICE)[[USER_KEY, *names]]


def category_affinity(dsn: str, as_of: date, categories: tuple[str, ...]) -> pd.DataFrame:
    """user_id + one ``affinity__<category>`` column per category (0 without engagement in it)."""
    long = category_propensity(dsn, as_of)
    wide = long.pivot_table(index=USER_KEY, columns="category", values="propensity", aggfunc="sum", fill_value=0.0)
    wide = wide.reindex(columns=list(categories), fill_value=0.0).astype("float64")
    wide.columns = [f"{AFFINITY_PREFIX}{c}" for c in categories]
    return wide.reset_index()


def affinity_columns(categories: tuple[str, ...]) -> list[str]:
    return [f"{AFFINITY_PREFIX}{c}" for c in categories]


def spend_share_columns(categories: tuple[str, ...]) -> list[str]:
    return [f"{SPEND_SHARE_PREFIX}{c}" for c in categories]


def spend_history(spend: pd.DataFrame, categories: tuple[str, ...]) -> pd.DataFrame:
    """user_id + one ``spend_share__<category>`` column per category (the category's share of what the user
    spent; categories outside ``categories`` count in the total only) + ``log_price_paid`` (the mean ln unit
    price per priced unit). From :func:`~ltvfeed.warehouse.propensity_reads.spend_by_category`'s rows; users
    without purchases are absent (read as no history)."""
    shares = spend_share_columns(categories)
    if spend.empty:
        return pd.DataFrame(columns=[USER_KEY, *shares, PRICE_PAID])
    by_user = spend.groupby(USER_KEY)
    total = by_user["spend"].sum()
    wide = spend.pivot_table(index=USER_KEY, columns="category", values="spend", aggfunc="sum", fill_value=0.0)
    wide = wide.reindex(columns=list(categories), fill_value=0.0).astype("float64")
    wide = wide.div(total.reindex(wide.index).where(lambda t: t > 0), axis=0).fillna(0.0)
    wide.columns = shares
    units = by_user["priced_units"].sum()
    wide[PRICE_PAID] = (by_user["log_price_units"].sum() / units.where(units > 0)).reindex(wide.index)
    return wide.reset_index()


def load_users(
    stack: Stack, as_of: date, categories: tuple[str, ...], source: str = "feast", ltv_model: str | None = None
) -> tuple[pd.DataFrame, str]:
    """User features as of ``as_of`` (one row per customer of that snapshot, sorted by user_id) and a note on
    the LTV predictions: their columns are there only when ``ltv_model`` scored that snapshot."""
    users = _user_base(stack, as_of, source)
    users[USER_KEY] = users[USER_KEY].astype(str)
    affinity = category_affinity(stack.warehouse_dsn, as_of, categories)
    users = users.merge(affinity, on=USER_KEY, how="left")
    cols = affinity_columns(categories)
    users[cols] = users[cols].fillna(0.0)
    spend = spend_history(spend_by_category(stack.warehouse_dsn, as_of, SPEND_DAYS), categories)
    users = users.merge(spend, on=USER_KEY, how="left")
    shares = spend_share_columns(categories)
    users[shares] = users[shares].fillna(0.0)
    note = "disabled"
    if ltv_model:
        ltv = ltv_predictions(stack.warehouse_dsn, as_of, ltv_model).rename(columns=LTV_COLUMNS)
        note = f"{ltv_model} predictions for {len(ltv)} users" if len(ltv) else f"no {ltv_model} predictions"
        if len(ltv):
            users = users.merge(ltv, on=USER_KEY, how="left")
    return users.sort_values(USER_KEY, kind="stable").reset_index(drop=True), note


@dataclass(frozen=True)
class FeatureTables:
    """Everything known about users and items at one cutoff: the rows the model scores."""

    as_of: date
    users: pd.DataFrame  # user_id + features, unique, sorted
    items: pd.DataFrame  # item_id + features (incl. popularity, commercial_score), unique, sorted
    categories: tuple[str, ...]  # category vocabulary of the affinity columns
    ltv_note: str = "disabled"  # whether LTV predictions are among the user features

    @property
    def user_index(self) -> pd.Index:
        return pd.Index(self.users[USER_KEY].astype(str))

    @property
    def item_index(self) -> pd.Index:
        return pd.Index(self.items[ITEM_KEY].astype(str))

    @property
    def popularity(self) -> np.ndarray:
        return self.items[POPULARITY].to_numpy(dtype=np.float64)


def load_tables(
    stack: Stack, as_of: date, cfg: PropensityConfig, *, categories: tuple[str, ...] | None = None
) -> FeatureTables:
    """Users and items as of ``as_of``. ``categories`` None: the item table's categories (training); a trained
    model passes its own."""
    items = load_items(stack.warehouse_dsn, as_of, cfg.popularity_days)
    if items.empty:
        raise UserError(f"marts.item_performance for as_of {as_of} has no items")
    if categories is None:
        categories = tuple(sorted(items["category"].unique()))
    users, note = load_users(stack, as_of, categories, cfg.user_features, cfg.ltv_model)
    if users.empty:
        raise UserError(f"marts.user_features for as_of {as_of} has no customers")
    return FeatureTables(as_of, users, items, categories, note)


@dataclass(frozen=True)
class ServedHistory:
    """What generation reads besides a model at the tables' cutoff, in the tables' rows: P(bought again within
    the horizon) of every item each evaluated user bought before the cutoff (``user_rows``, ``item_rows``,
    ``probability``), and the recent orders its catalogue weighs an item by within its category in the
    cold-start P (``recent_popularity``, [items], 0 where unknown; not the tables' ``popularity``, a longer
    look-back for negative sampling and the popularity baseline)."""

    user_rows: np.ndarray
    item_rows: np.ndarray
    probability: np.ndarray
    recent_popularity: np.ndarray


def served_history(dsn: str, tables: FeatureTables, user_rows: np.ndarray, horizon_days: int) -> ServedHistory:
    """Read (one catalogue read) and estimate exactly as feed generation does (:mod:`ltvfeed.frames.history`),
    so the promotion gate judges the probabilities that are served."""
    from ltvfeed.frames.history import pair_probability
    from ltvfeed.frames.inputs import Catalogue, UserBatch
    from ltvfeed.warehouse.generation_reads import WarehouseInputs

    user_rows = np.asarray(user_rows, dtype=np.int64)
    user_ids = tables.users[USER_KEY].astype(str).to_numpy()[user_rows]
    with WarehouseInputs(dsn, tables.as_of, max_recent_views=0, non_merchandise=()) as warehouse:
        frame = warehouse.catalogue_frame()
        chunk = warehouse.user_chunk(user_ids)
    catalogue = Catalogue.from_frame(frame)
    batch = UserBatch.from_frames(catalogue, user_ids, purchases=chunk.purchases, max_recent_views=0)
    p = pair_probability(batch, catalogue, horizon_days)
    items = tables.item_index.get_indexer(pd.Index(catalogue.item_ids[batch.purchased_items].astype(str)))
    known = items >= 0
    popularity = pd.Series(frame["popularity"].to_numpy(dtype=np.float64), index=frame[ITEM_KEY].astype(str))
    return ServedHistory(
        user_rows[batch.purchased_rows[known]],
        items[known],
        p[known],
        popularity.reindex(tables.item_index).fillna(0.0).to_numpy(dtype=np.float64),
    )


# ------------------------------------------------------------------------------------------ negative sampling


def sampling_weights(popularity: np.ndarray, power: float) -> np.ndarray:
    """P(item) for negatives: (popularity + 1) ** power, normalised."""
    weights = (np.asarray(popularity, dtype=np.float64).clip(min=0) + 1.0) ** power
    return weights / weights.sum()


def sample_negatives(
    pos_users: np.ndarray,
    pos_items: np.ndarray,
    n_items: int,
    weights: np.ndarray,
    per_positive: int,
    seed: int,
    max_rounds: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """``per_positive`` (user, item) negatives for every positive (user, item), items drawn with ``weights``,
    never a pair among the positives. Deterministic for the same inputs and seed. A draw that keeps hitting the
    user's own purchases (users who bought nearly everything) is dropped after ``max_rounds`` redraws."""
    users = np.asarray(pos_users, dtype=np.int64)
    items = np.asarray(pos_items, dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise UserError("positive users and items must be 1-d arrays of the same length")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_items,) or not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise UserError(f"negative sampling weights must be {n_items} finite values >= 0 with a positive sum")
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise UserError("positive items must be rows of the item table")
    p = weights / weights.sum()
    taken = np.unique(users * n_items + items)  # sorted keys of positive pairs
    rng = np.random.default_rng(seed)
    neg_users = np.repeat(users, per_positive)
    neg_items = rng.choice(n_items, size=len(neg_users), p=p)

    def hits(u: np.ndarray, i: np.ndarray) -> np.ndarray:
        keys = u * n_items + i
        at = np.minimum(np.searchsorted(taken, keys), max(len(taken) - 1, 0))
        return taken[at] == keys if len(taken) else np.zeros(len(keys), dtype=bool)

    bad = hits(neg_users, neg_items)
    for _ in range(max_rounds):
        if not bad.any():
            break
        redo = np.flatnonzero(bad)
        neg_items[redo] = rng.choice(n_items, size=len(redo), p=p)
        bad[redo] = hits(neg_users[redo], neg_items[redo])
    if bad.any():
        log.info("dropped %d negatives of users who bought (nearly) every sampleable item", int(bad.sum()))
    return neg_users[~bad], neg_items[~bad]


# ----------------------------------------------------------------------------------------------- training sets


@dataclass(frozen=True)
class LabelledPairs:
    """(user row, item row, label) over a :class:`FeatureTables`, positives first."""

    tables: FeatureTables
    horizon_days: int
    user_rows: np.ndarray
    item_rows: np.ndarray
    labels: np.ndarray  # float32, 1 = bought in the window
    dropped: dict[str, int]  # positives that could not be featurised, by reason

    @property
    def n_positive(self) -> int:
        return int(self.labels.sum())

    def positives(self) -> tuple[np.ndarray, np.ndarray]:
        keep = self.labels > 0
        return self.user_rows[keep], self.item_rows[keep]


def positive_rows(tables: FeatureTables, bought: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Rows of the bought pairs in the tables; pairs whose user or item has no snapshot are counted and left out."""
    u = tables.user_index.get_indexer(pd.Index(bought[USER_KEY].astype(str)))
    i = tables.item_index.get_indexer(pd.Index(bought[ITEM_KEY].astype(str)))
    dropped = {"user_without_snapshot": int((u < 0).sum()), "item_without_snapshot": int(((u >= 0) & (i < 0)).sum())}
    keep = (u >= 0) & (i >= 0)
    return u[keep].astype(np.int64), i[keep].astype(np.int64), dropped


def labelled_pairs(
    tables: FeatureTables, bought: pd.DataFrame, horizon_days: int, cfg: PropensityConfig, seed: int
) -> LabelledPairs:
    """Positives of ``bought`` plus sampled negatives over ``tables``."""
    pos_u, pos_i, dropped = positive_rows(tables, bought)
    if len(pos_u) == 0:
        raise UserError(
            f"no purchases in the {horizon_days} days from {tables.as_of} by customers and items known at that "
            "cutoff: nothing to learn or evaluate (is the window inside the data?)"
        )
    weights = sampling_weights(tables.popularity, cfg.negative_popularity_power)
    neg_u, neg_i = sample_negatives(pos_u, pos_i, len(tables.items), weights, cfg.negatives_per_positive, seed)
    users = np.concatenate([pos_u, neg_u])
    items = np.concatenate([pos_i, neg_i])
    labels = np.concatenate([np.ones(len(pos_u), np.float32), np.zeros(len(neg_u), np.float32)])
    if any(dropped.values()):
        log.info("cutoff %s: left out positives %s", tables.as_of, dropped)
    return LabelledPairs(tables, horizon_days, users, items, labels, dropped)


def window_pairs(stack: Stack, tables: FeatureTables, horizon_days: int, cfg: PropensityConfig, seed: int):
    """The labelled pairs of the window [tables.as_of, + horizon_days)."""
    bought = purchases(stack.warehouse_dsn, tables.as_of, tables.as_of + timedelta(days=horizon_days))
    return labelled_pairs(tables, bought, horizon_days, cfg, seed)

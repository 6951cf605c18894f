"""Expectation suites for the dbt marts (dbt/models/marts, schema ``marts``).

EVERY mart column the gate reads is named in the constants below and nowhere else: when a model renames or
adds a column, align it here. Column names follow the models' YAML in dbt/models/marts/.

Snapshot marts (user_features, item_performance, user_category_propensity) keep one snapshot per as_of;
the gate validates the run's snapshot only (``snapshot_column="as_of"``), so backfills of old cutoffs are
judged on their own rows. ltv_labels is rebuilt whole on every run and is validated whole.
"""

from __future__ import annotations

from ltvfeed.quality.rules import (
    Rule,
    TableSuite,
    between,
    latest_between,
    no_rows,
    not_null,
    param,
    row_count,
    unique,
    unique_together,
)

_WINDOWS = (7, 30, 90)

# ---------------------------------------------------------------------------------------- user_features
USER_FEATURES_KEY = "user_id"  # unique within the as_of snapshot = unique (user_id, as_of)
USER_FEATURES_AT_LEAST_ONE_DAY = ("recency_days", "tenure_days", "days_since_last_event")  # computed from < as_of
USER_FEATURES_NON_NEGATIVE = (
    "frequency",
    "monetary_total",
    "monetary_avg",
    "orders_30d",
    "revenue_30d",
    "orders_90d",
    "revenue_90d",
    "orders_365d",
    "revenue_365d",
    "referral_orders",
    *(f"{m}_{w}d" for w in _WINDOWS for m in ("clicks", "views", "add_to_cart", "referral_purchases")),
    *(f"dwell_seconds_{w}d" for w in _WINDOWS),
    "referral_purchase_amount_90d",
    "searches_30d",
    "searches_90d",
    "events_total",
)
USER_FEATURES_RATES = tuple(
    f"{rate}_{w}d" for w in _WINDOWS for rate in ("click_per_view", "add_to_cart_per_view", "purchase_per_click")
)
USER_FEATURES_BEFORE_CUTOFF = ("first_order_at", "last_order_at", "last_event_at", "first_seen_at")

# -------------------------------------------------------------------------------------- item_performance
ITEM_PERFORMANCE_KEY = "item_id"  # unique within the as_of snapshot = unique (item_id, as_of)
ITEM_PERFORMANCE_SCORES = ("commercial_score", "add_to_cart_rate_30d", "add_to_cart_rate_decayed")  # in [0, 1]
ITEM_PERFORMANCE_NON_NEGATIVE = (
    "price",
    "views_30d",
    "clicks_30d",
    "add_to_cart_30d",
    "conversions_30d",
    "units_sold_30d",
    "revenue_30d",
    "views_decayed",
    "clicks_decayed",
    "add_to_cart_decayed",
    "conversions_decayed",
    "revenue_decayed",
)
ITEM_PERFORMANCE_BEFORE_CUTOFF = ("last_event_at", "last_sold_at")

# ------------------------------------------------------------------------------------------- ltv_labels
LTV_LABELS_KEY = ("horizon_days", "cutoff", "user_id")
LTV_LABELS_NON_NEGATIVE = ("revenue", "orders")

# ---------------------------------------------------------------------------- user_category_propensity
PROPENSITY_KEY = ("user_id", "category")  # within the as_of snapshot
PROPENSITY_SHARE = "propensity"  # in [0, 1], summing to 1 per user


def _point_in_time(columns: tuple[str, ...]) -> list[Rule]:
    """No value at or after as_of 00:00 UTC: a feature that saw the future would leak the label."""
    return [between(c, max_value=param("cutoff"), strict_max=True) for c in columns]


def _user_features() -> TableSuite:
    return TableSuite(
        layer="marts",
        table="marts.user_features",
        snapshot_column="as_of",
        rules=(
            row_count(1, param("customers"), "between 1 and the number of distinct customers in raw"),
            latest_between("as_of", param("as_of"), param("as_of"), "fresh: the snapshot for the run's as_of exists"),
            *not_null(
                USER_FEATURES_KEY,
                "feature_timestamp",
                *USER_FEATURES_AT_LEAST_ONE_DAY,
                *USER_FEATURES_NON_NEGATIVE,
                *USER_FEATURES_RATES,
            ),
            unique(USER_FEATURES_KEY),
            between("feature_timestamp", param("cutoff"), param("cutoff"), description="as_of 00:00 UTC (Feast)"),
            *(between(c, 1) for c in USER_FEATURES_AT_LEAST_ONE_DAY),
            *(between(c, 0) for c in USER_FEATURES_NON_NEGATIVE),
            *(between(c, 0, 1) for c in USER_FEATURES_RATES),
            *_point_in_time(USER_FEATURES_BEFORE_CUTOFF),
        ),
    )


def _item_performance() -> TableSuite:
    return TableSuite(
        layer="marts",
        table="marts.item_performance",
        snapshot_column="as_of",
        rules=(
            row_count(param("items_min"), param("items_known"), "at most the number of distinct items in raw"),
            *not_null(ITEM_PERFORMANCE_KEY, *ITEM_PERFORMANCE_SCORES),
            unique(ITEM_PERFORMANCE_KEY),
            *(between(c, 0, 1) for c in ITEM_PERFORMANCE_SCORES),
            *(between(c, 0) for c in ITEM_PERFORMANCE_NON_NEGATIVE),
            *_point_in_time(ITEM_PERFORMANCE_BEFORE_CUTOFF),
        ),
    )


def _ltv_labels(max_rows: int) -> TableSuite:
    return TableSuite(
        layer="marts",
        table="marts.ltv_labels",
        rules=(
            row_count(1, max_rows),
            *not_null(*LTV_LABELS_KEY, *LTV_LABELS_NON_NEGATIVE, "is_complete"),
            unique_together(LTV_LABELS_KEY),
            between("horizon_days", 1),
            *(between(c, 0) for c in LTV_LABELS_NON_NEGATIVE),
            latest_between("cutoff", param("as_of"), None, "labels include the run's as_of as a cutoff"),
            no_rows(
                "select user_id, cutoff, horizon_days, window_end from {batch} "
                "where window_end <> cutoff + horizon_days",
                "window_end = cutoff + horizon_days",
            ),
        ),
    )


def _user_category_propensity(max_rows: int) -> TableSuite:
    return TableSuite(
        layer="marts",
        table="marts.user_category_propensity",
        snapshot_column="as_of",
        rules=(
            row_count(0, max_rows),
            *not_null(*PROPENSITY_KEY, PROPENSITY_SHARE),
            unique_together(PROPENSITY_KEY),
            between(PROPENSITY_SHARE, 0, 1),
            no_rows(
                f"select user_id, sum({PROPENSITY_SHARE}) as total from {{batch}} group by user_id "
                f"having abs(sum({PROPENSITY_SHARE}) - 1) > 1e-6",
                "each user's propensities sum to 1",
            ),
        ),
    )


def mart_suites(max_rows: int) -> list[TableSuite]:
    return [_user_features(), _item_performance(), _ltv_labels(max_rows), _user_category_propensity(max_rows)]

"""Feast definitions of ltvfeed: entities, sources over the dbt marts, feature views and feature services.

Definitions only: ``feast apply`` imports every .py file in this folder, and ``ltvfeed.features.apply`` loads
this file to apply exactly the same objects. Nothing here connects anywhere or reads settings.

Every mart is a stack of daily snapshots: the rows for cutoff ``as_of`` T carry ``feature_timestamp`` = T 00:00
UTC and use only data before it, so Feast's point-in-time join (latest snapshot with feature_timestamp <= the
entity row's timestamp, not older than the view's TTL) never reads the future.

Feature names are the mart's column names. They are unique within each feature service, so training frames and
online reads use plain names (no ``view__`` prefixes); serving's ``Catalogue.from_frame`` reads item columns
by these names.

One view is also written between snapshots: user_recent_purchases has a push source, and new orders are pushed
online (ltvfeed.features.recent_purchases) so that the feed API's freshness filter (service ``freshness``,
ltvfeed.serving.freshness) drops items bought since the served feed generation. It feeds no model.
"""

from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, PushSource, ValueType
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.types import Array, Bool, Float64, Int32, Int64, String

# A snapshot is current until the next daily one; three days of TTL keep serving (and point-in-time joins)
# working through two missed pipeline runs, after which features read as missing instead of silently stale.
SNAPSHOT_TTL = timedelta(days=3)

# ---------------------------------------------------------------------------------------------------- entities

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A customer: registered user or known from orders only (marts.user_features.user_id).",
)
item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="A product (catalogue items and items seen in events/orders).",
)
category = Entity(
    name="category",
    join_keys=["category"],
    value_type=ValueType.STRING,
    description="An item category (lower-case; 'unknown' outside the catalogue). Paired with user.",
)

# ----------------------------------------------------------------------------------------------------- sources

user_features_source = PostgreSQLSource(
    name="user_features_source",
    table="marts.user_features",
    timestamp_field="feature_timestamp",
    description="dbt mart marts.user_features: one row per customer and daily snapshot.",
)

user_category_propensity_source = PostgreSQLSource(
    name="user_category_propensity_source",
    table="marts.user_category_propensity",
    timestamp_field="feature_timestamp",
    description="dbt mart marts.user_category_propensity: one row per customer, category and snapshot.",
)

# One row per customer and snapshot (customers without category engagement get empty arrays, so a newer
# snapshot always overwrites an older one online): categories ordered by propensity, best first.
user_category_affinity_source = PostgreSQLSource(
    name="user_category_affinity_source",
    query="""
        select
            u.user_id,
            u.feature_timestamp,
            coalesce(
                array_agg(p.category order by p.propensity desc, p.category) filter (where p.category is not null),
                '{}'
            ) as affinity_categories,
            coalesce(
                array_agg(p.propensity order by p.propensity desc, p.category) filter (where p.category is not null),
                '{}'
            ) as affinity_propensities
        from marts.user_features as u
        left join marts.user_category_propensity as p on p.user_id = u.user_id and p.as_of = u.as_of
        group by u.user_id, u.feature_timestamp
    """,
    timestamp_field="feature_timestamp",
    description="marts.user_category_propensity pivoted to one row per customer and snapshot.",
)

# price is numeric(12, 2) in the mart; Feast's PostgreSQL reader wants double precision.
item_performance_source = PostgreSQLSource(
    name="item_performance_source",
    query="""
        select
            item_id, feature_timestamp, category, price::double precision as price, in_stock, is_repeat_purchase,
            in_catalog, views_30d, clicks_30d, add_to_cart_30d, add_to_cart_rate_30d, conversions_30d,
            units_sold_30d, revenue_30d, views_decayed, clicks_decayed, add_to_cart_decayed,
            add_to_cart_rate_decayed, conversions_decayed, revenue_decayed, commercial_score
        from marts.item_performance
    """,
    timestamp_field="feature_timestamp",
    description="dbt mart marts.item_performance: one row per item and daily snapshot.",
)

# Snapshots from the mart; between them, new orders are pushed online (PushMode.ONLINE: the PostgreSQL offline
# store takes no pushes, and the mart already holds the history). A push carries a user's whole recent list
# stamped with the time it was computed, so it overrides that day's snapshot and the next snapshot overrides it.
user_recent_purchases_source = PostgreSQLSource(
    name="user_recent_purchases_source",
    table="marts.user_recent_purchases",
    timestamp_field="feature_timestamp",
    description="dbt mart marts.user_recent_purchases: one row per customer and daily snapshot.",
)

user_recent_purchases_push = PushSource(
    name="user_recent_purchases_push",
    batch_source=user_recent_purchases_source,
    description="Recent purchases recomputed from raw orders after new orders arrive "
    "(ltvfeed.features.recent_purchases.push_recent_purchases).",
)

# No snapshot at all: the collector pushes each user's live activity after a commit (PushMode.ONLINE). The batch
# source Feast requires is an empty query of the same columns, so materialisation loads nothing and keeps what was
# pushed.
user_live_activity_source = PostgreSQLSource(
    name="user_live_activity_source",
    query="""
        select null::text as user_id, null::timestamptz as feature_timestamp,
            null::text[] as live_categories, null::bigint[] as live_views, null::bigint[] as live_clicks,
            null::bigint[] as live_add_to_cart, null::text[] as last_viewed_item_ids,
            null::text[] as wishlist_item_ids, null::text[] as saved_item_ids, null::text[] as profile_categories
        where false
    """,
    timestamp_field="feature_timestamp",
    description="None: user_live_activity is written by pushes only (ltvfeed.features.live_activity).",
)

user_live_activity_push = PushSource(
    name="user_live_activity_push",
    batch_source=user_live_activity_source,
    description="Live activity recomputed from raw.events and raw.preferences after the collector stores events "
    "(ltvfeed.features.live_activity.push_live_activity).",
)

# Written by LTV batch scoring (not dbt; see ltvfeed/sql/warehouse.sql). feature_timestamp carries a revision
# offset of microseconds so that re-scoring a snapshot with another model version is newer (see the table).
user_ltv_source = PostgreSQLSource(
    name="user_ltv_source",
    query="""
        select
            user_id, feature_timestamp, scored_at, horizon_days, model_version,
            prob_return, expected_ltv, p10, p50, p90
        from marts.user_ltv_predictions
    """,
    timestamp_field="feature_timestamp",
    created_timestamp_column="scored_at",
    description="marts.user_ltv_predictions: the champion LTV model's predictions per customer and snapshot.",
)

# Predictions are refreshed by ltv_retrain (weekly, and when the marts are refreshed): a week plus a few days
# of grace before they read as missing instead of silently stale.
PREDICTION_TTL = timedelta(days=10)
# Live activity counts the last hour as of its push: a day without a push and it reads as missing, not as stale.
LIVE_TTL = timedelta(days=1)


def _fields(dtype, *names: str) -> list[Field]:
    return [Field(name=n, dtype=dtype) for n in names]


def _windowed(names: tuple[str, ...], windows: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(f"{n}_{w}d" for w in windows for n in names)


# ----------------------------------------------------------------------------------------- user feature views

user_rfm = FeatureView(
    name="user_rfm",
    entities=[user],
    ttl=SNAPSHOT_TTL,
    schema=[
        *_fields(Int32, "recency_days", "frequency", "tenure_days", "orders_30d", "orders_90d", "orders_365d"),
        *_fields(Int32, "referral_orders"),
        *_fields(Float64, "monetary_total", "monetary_avg", "revenue_30d", "revenue_90d", "revenue_365d"),
    ],
    source=user_features_source,
    online=True,
    description="Recency, frequency, monetary value and tenure from orders before the cutoff. Day counts "
    "rather than order timestamps: relative to the cutoff, so they mean the same at every snapshot.",
    tags={"mart": "user_features", "group": "rfm"},
)

user_engagement = FeatureView(
    name="user_engagement",
    entities=[user],
    ttl=SNAPSHOT_TTL,
    schema=[
        *_fields(Int32, *_windowed(("clicks", "views", "add_to_cart", "referral_purchases"), (7, 30, 90))),
        *_fields(Float64, *_windowed(("dwell_seconds",), (7, 30, 90))),
        *_fields(Float64, *_windowed(("click_per_view", "add_to_cart_per_view", "purchase_per_click"), (7, 30, 90))),
        *_fields(Float64, "referral_purchase_amount_90d"),
        *_fields(Int32, "events_total", "days_since_last_event"),
    ],
    source=user_features_source,
    online=True,
    description="Referral and site engagement over the 7/30/90 days before the cutoff: counts, dwell, rates.",
    tags={"mart": "user_features", "group": "engagement"},
)

user_search = FeatureView(
    name="user_search",
    entities=[user],
    ttl=SNAPSHOT_TTL,
    schema=_fields(Int32, "searches_30d", "searches_90d"),
    source=user_features_source,
    online=True,
    description="Search events in the 30/90 days before the cutoff.",
    tags={"mart": "user_features", "group": "search"},
)

user_demographics = FeatureView(
    name="user_demographics",
    entities=[user],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="is_registered", dtype=Bool),
        *_fields(String, "country", "gender", "acquisition_partner_id"),
        Field(name="age", dtype=Int32, description="Null when the birth year is unknown."),
    ],
    source=user_features_source,
    online=True,
    description="Profile attributes (current state at the snapshot); 'unknown' where missing.",
    tags={"mart": "user_features", "group": "demographics"},
)

user_preferences = FeatureView(
    name="user_preferences",
    entities=[user],
    ttl=SNAPSHOT_TTL,
    schema=[
        *_fields(Int32, "wishlist_count", "saved_count", "profile_category_count"),
        Field(name="favourite_category", dtype=String),
    ],
    source=user_features_source,
    online=True,
    description="Explicit preferences created before the cutoff and the top category of the propensity mart.",
    tags={"mart": "user_features", "group": "preferences"},
)

# --------------------------------------------------------------------------------- user x category propensity
# Two shapes of the same mart:
# - user_category_propensity, keyed by (user, category): one row per pair, as in the mart. Point-in-time
#   training rows for per-(user, category) models and lookups of single pairs. Online, a pair that drops out
#   of later snapshots keeps its last value until the view's TTL (the mart only holds pairs with engagement).
# - user_category_affinity, keyed by user: the whole distribution as two aligned arrays, best first. An app
#   wanting every category's affinity for a user makes one online read per user instead of one per category,
#   and every snapshot rewrites it completely.

user_category_propensity = FeatureView(
    name="user_category_propensity",
    entities=[user, category],
    ttl=SNAPSHOT_TTL,
    schema=[
        *_fields(Int32, "views_90d", "clicks_90d", "add_to_cart_90d", "purchases_365d", "saved_items"),
        Field(name="is_profile_category", dtype=Bool),
        *_fields(Float64, "score", "propensity"),
    ],
    source=user_category_propensity_source,
    online=True,
    description="How strongly a customer leans to one category: engagement counts, weighted score and its "
    "share of the customer's total (propensity, summing to 1 per customer and snapshot).",
    tags={"mart": "user_category_propensity"},
)

user_category_affinity = FeatureView(
    name="user_category_affinity",
    entities=[user],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="affinity_categories", dtype=Array(String)),
        Field(name="affinity_propensities", dtype=Array(Float64)),
    ],
    source=user_category_affinity_source,
    online=True,
    description="All of a customer's category propensities: affinity_categories[i] has affinity_propensities[i], "
    "best first; empty without engagement.",
    tags={"mart": "user_category_propensity"},
)

user_ltv = FeatureView(
    name="user_ltv",
    entities=[user],
    ttl=PREDICTION_TTL,
    schema=[
        *_fields(Float64, "prob_return", "expected_ltv", "p10", "p50", "p90"),
        Field(name="horizon_days", dtype=Int32),
        Field(name="model_version", dtype=String),
    ],
    source=user_ltv_source,
    online=True,
    description="Predicted revenue over the next horizon_days (ZILN mean and P10/P50/P90) and P(buys again), "
    "by the model version that was champion when the snapshot was scored.",
    tags={"table": "marts.user_ltv_predictions", "group": "ltv"},
)

user_recent_purchases = FeatureView(
    name="user_recent_purchases",
    entities=[user],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="recent_purchase_item_ids", dtype=Array(String)),
        Field(name="recent_purchase_times", dtype=Array(Int64), description="Epoch seconds (floored), UTC."),
        Field(name="recent_purchase_repeatable", dtype=Array(Bool)),
    ],
    source=user_recent_purchases_push,
    online=True,
    description="Items the customer bought in the last 30 days, newest first: recent_purchase_item_ids[i] was "
    "last bought at recent_purchase_times[i] and is a repeat-purchase item if recent_purchase_repeatable[i]. "
    "Read at request time by the feed API to drop items bought since the served feed was generated.",
    tags={"mart": "user_recent_purchases", "group": "freshness"},
)

user_live_activity = FeatureView(
    name="user_live_activity",
    entities=[user],
    ttl=LIVE_TTL,
    schema=[
        Field(name="live_categories", dtype=Array(String), description="Most engaged first, last hour."),
        *_fields(Array(Int64), "live_views", "live_clicks", "live_add_to_cart"),
        Field(name="last_viewed_item_ids", dtype=Array(String), description="Last hour, most recent first."),
        *_fields(Array(String), "wishlist_item_ids", "saved_item_ids", "profile_categories"),
    ],
    source=user_live_activity_push,
    online=True,
    description="What the customer is doing now: views, clicks and add-to-carts of the last hour per category "
    "(live_views[i] for live_categories[i]), the items viewed in it, and the current wishlist, saved items and "
    "profile categories. Pushed by the event collector within seconds; no snapshot.",
    tags={"group": "live", "pushed_by": "collector"},
)

# ----------------------------------------------------------------------------------------- item feature views

item_performance = FeatureView(
    name="item_performance",
    entities=[item],
    ttl=SNAPSHOT_TTL,
    schema=[
        Field(name="category", dtype=String),
        Field(name="price", dtype=Float64, description="Null for items outside the catalogue never sold."),
        *_fields(Bool, "in_stock", "is_repeat_purchase", "in_catalog"),
        *_fields(Int32, "views_30d", "clicks_30d", "add_to_cart_30d", "conversions_30d", "units_sold_30d"),
        *_fields(Float64, "add_to_cart_rate_30d", "revenue_30d", "views_decayed", "clicks_decayed"),
        *_fields(Float64, "add_to_cart_decayed", "add_to_cart_rate_decayed", "conversions_decayed"),
        *_fields(Float64, "revenue_decayed", "commercial_score"),
    ],
    source=item_performance_source,
    online=True,
    description="Commercial performance (30-day and time-decayed counts, commercial_score in [0, 1] ranking "
    "the non-personal feed) and catalogue attributes (current state: serving filters on in_stock).",
    tags={"mart": "item_performance"},
)

# ------------------------------------------------------------------------------------------- feature services

ltv_model = FeatureService(
    name="ltv_model",
    features=[user_rfm, user_engagement, user_search, user_demographics, user_preferences],
    description="Inputs of the LTV network: every per-customer feature. Keyed by user_id.",
    tags={"consumer": "training/serving LTV model"},
)

# Every service is keyed by ONE entity, so that an app reads it with that entity's key alone (Feast's online
# read and `feast serve` require the join keys of every view in a service). Feed generation does not read these:
# it scores whole marts snapshots in batch (ltvfeed.warehouse.generation_reads); only the feed API's request-time
# filter reads Feast (service freshness).

user_profile = FeatureService(
    name="user_profile",
    features=[
        user_category_affinity,
        user_preferences[["favourite_category"]],
        user_rfm[["frequency", "recency_days"]],
        user_ltv[["expected_ltv", "prob_return"]],
    ],
    description="A customer at a glance for apps (CRM, support tools, a partner's own ranking): category "
    "affinities, favourite category, order history size and predicted long-term value. Keyed by user_id.",
    tags={"consumer": "apps reading a customer profile"},
)

item_catalog = FeatureService(
    name="item_catalog",
    features=[item_performance[["category", "price", "in_stock", "is_repeat_purchase", "commercial_score"]]],
    description="An item's catalogue attributes and commercial signals (commercial_score ranks the "
    "non-personal feed) for apps. Keyed by item_id.",
    tags={"consumer": "apps reading item attributes"},
)

ltv_scores = FeatureService(
    name="ltv_scores",
    features=[user_ltv],
    description="The LTV model's outputs per customer, for apps (CRM, bidding) reading predictions online. Not "
    "an input of the LTV model itself (ltv_model): a model must not learn from its own predictions.",
    tags={"consumer": "apps reading LTV predictions"},
)

freshness = FeatureService(
    name="freshness",
    features=[user_recent_purchases],
    description="What the feed API reads per request to drop items bought since the served feed generation. "
    "Not a model input: kept apart from ltv_model so that training features do not change. Keyed by user_id.",
    tags={"consumer": "feed API freshness filter"},
)

live_activity = FeatureService(
    name="live_activity",
    features=[user_live_activity],
    description="A session in progress, for apps: the last hour's engagement per category, the items viewed in "
    "it and the current preferences, pushed by the event collector. Keyed by user_id.",
    tags={"consumer": "apps reacting to live sessions"},
)

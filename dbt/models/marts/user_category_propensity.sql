-- Point-in-time snapshot: how strongly each customer leans to each item category, for cutoff var as_of.
-- Uses only rows with timestamp < as_of 00:00 UTC. Each run adds (or, re-run, replaces) the as_of snapshot.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='as_of',
    on_schema_change='append_new_columns',
    indexes=[{'columns': ['as_of', 'user_id', 'category'], 'unique': True}, {'columns': ['user_id']}],
) }}
{%- set as_of = as_of_date() %}

with params as (
    select date '{{ as_of }}' as as_of, {{ cutoff_ts(as_of) }} as cutoff
),

customers as (
    select c.user_id
    from {{ ref('int_customers') }} as c
    cross join params as p
    where c.first_seen_at < p.cutoff
),

engagement as (
    select
        a.user_id,
        a.category,
        sum(a.views) as views_90d,
        sum(a.clicks) as clicks_90d,
        sum(a.add_to_cart) as add_to_cart_90d
    from {{ ref('int_user_category_daily_activity') }} as a
    cross join params as p
    where a.activity_date >= p.as_of - 90 and a.activity_date < p.as_of
    group by a.user_id, a.category
),

purchases as (
    select
        o.user_id,
        coalesce(i.category, 'unknown') as category,
        sum(oi.quantity) as purchases_365d
    from {{ ref('stg_orders') }} as o
    join {{ ref('stg_order_items') }} as oi on oi.order_id = o.order_id
    left join {{ ref('stg_items') }} as i on i.item_id = oi.item_id
    cross join params as p
    where o.order_date >= p.as_of - 365 and o.order_date < p.as_of
    group by o.user_id, coalesce(i.category, 'unknown')
),

stated as (
    -- wishlisted/saved items count for their item's category; profile categories name one directly
    select
        pr.user_id,
        coalesce(pr.category, i.category, 'unknown') as category,
        count(*) filter (where pr.kind in ('wishlist', 'saved')) as saved_items,
        bool_or(pr.kind = 'profile_category') as is_profile_category
    from {{ ref('stg_preferences') }} as pr
    left join {{ ref('stg_items') }} as i on i.item_id = pr.item_id
    cross join params as p
    where pr.created_at < p.cutoff
    group by pr.user_id, coalesce(pr.category, i.category, 'unknown')
),

pairs as (
    select user_id, category from engagement
    union
    select user_id, category from purchases
    union
    select user_id, category from stated
),

scored as (
    select
        pairs.user_id,
        pairs.category,
        coalesce(e.views_90d, 0)::int as views_90d,
        coalesce(e.clicks_90d, 0)::int as clicks_90d,
        coalesce(e.add_to_cart_90d, 0)::int as add_to_cart_90d,
        coalesce(pu.purchases_365d, 0)::int as purchases_365d,
        coalesce(s.saved_items, 0)::int as saved_items,
        coalesce(s.is_profile_category, false) as is_profile_category
    from pairs
    join customers as c on c.user_id = pairs.user_id
    left join engagement as e on e.user_id = pairs.user_id and e.category = pairs.category
    left join purchases as pu on pu.user_id = pairs.user_id and pu.category = pairs.category
    left join stated as s on s.user_id = pairs.user_id and s.category = pairs.category
),

weighted as (
    select
        *,
        (views_90d + 2 * clicks_90d + 3 * add_to_cart_90d + 5 * purchases_365d + 3 * saved_items
            + 5 * is_profile_category::int)::double precision as score
    from scored
)

select
    w.user_id,
    w.category,
    p.as_of,
    p.cutoff as feature_timestamp,
    w.views_90d,
    w.clicks_90d,
    w.add_to_cart_90d,
    w.purchases_365d,
    w.saved_items,
    w.is_profile_category,
    w.score,
    w.score / sum(w.score) over (partition by w.user_id) as propensity
from weighted as w
cross join params as p
where w.score > 0

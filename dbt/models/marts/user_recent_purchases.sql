-- Point-in-time snapshot of each customer's recent purchases for cutoff var as_of: the distinct items bought on
-- the recent_purchase_days UTC days before as_of, newest first, as three aligned arrays (item id, time of its
-- latest purchase in epoch seconds, repeat-purchase flag). The feed API drops items bought after the served
-- generation's cutoff with it (Feast view user_recent_purchases); orders between snapshots reach Redis through
-- the view's push source, computed the same way from raw (ltvfeed.features.recent_purchases).
-- Every customer existing before the cutoff gets a row (empty arrays without recent purchases), so each
-- snapshot overwrites the previous one online. Uses only orders with ordered_at < as_of 00:00 UTC.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='as_of',
    on_schema_change='append_new_columns',
    indexes=[{'columns': ['as_of', 'user_id'], 'unique': True}, {'columns': ['user_id']}],
) }}
{%- set as_of = as_of_date() %}
{%- set window_days = positive_int_var('recent_purchase_days') %}

with params as (
    select date '{{ as_of }}' as as_of, {{ cutoff_ts(as_of) }} as cutoff
),

customers as (
    select c.user_id
    from {{ ref('int_customers') }} as c
    cross join params as p
    where c.first_seen_at < p.cutoff
),

bought as (
    -- one entry per customer and item: its latest purchase in the window
    select o.user_id, oi.item_id, max(o.ordered_at) as purchased_at
    from {{ ref('stg_orders') }} as o
    join {{ ref('stg_order_items') }} as oi on oi.order_id = o.order_id
    cross join params as p
    where o.order_date >= p.as_of - {{ window_days }} and o.order_date < p.as_of
    group by o.user_id, oi.item_id
),

lists as (
    select
        b.user_id,
        array_agg(b.item_id order by b.purchased_at desc, b.item_id) as item_ids,
        array_agg(
            floor(extract(epoch from b.purchased_at))::bigint order by b.purchased_at desc, b.item_id
        ) as times,
        array_agg(coalesce(i.is_repeat_purchase, false) order by b.purchased_at desc, b.item_id) as repeatable
    from bought as b
    left join {{ ref('int_items') }} as i on i.item_id = b.item_id
    group by b.user_id
)

select
    c.user_id,
    p.as_of,
    p.cutoff as feature_timestamp,
    coalesce(l.item_ids, '{}'::text[]) as recent_purchase_item_ids,
    coalesce(l.times, '{}'::bigint[]) as recent_purchase_times,
    coalesce(l.repeatable, '{}'::boolean[]) as recent_purchase_repeatable
from customers as c
cross join params as p
left join lists as l on l.user_id = c.user_id

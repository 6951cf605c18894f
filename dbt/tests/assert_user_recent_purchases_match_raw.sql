-- Point-in-time check for user_recent_purchases, recomputed from raw: for the var as_of snapshot, the arrays
-- must be aligned, name each item once, and hold exactly each customer's distinct items ordered in
-- [cutoff - recent_purchase_days days, cutoff) with the floor of the latest ordered_at in epoch seconds.
-- A row returned means an order on or after the cutoff (or outside the window) was used, one was missed, or
-- the arrays disagree.
{%- set as_of = as_of_date() %}
{%- set window_days = positive_int_var('recent_purchase_days') %}

with params as (
    select date '{{ as_of }}' as as_of, {{ cutoff_ts(as_of) }} as cutoff
),

snapshot as (
    select r.*
    from {{ ref('user_recent_purchases') }} as r
    cross join params as p
    where r.as_of = p.as_of
),

misaligned as (
    select user_id, null::text as item_id, null::bigint as mart_time, null::bigint as raw_time
    from snapshot
    where cardinality(recent_purchase_item_ids) <> cardinality(recent_purchase_times)
       or cardinality(recent_purchase_item_ids) <> cardinality(recent_purchase_repeatable)
       or cardinality(recent_purchase_item_ids) <> (select count(distinct i) from unnest(recent_purchase_item_ids) as i)
),

mart as (
    select s.user_id, u.item_id, u.purchased_at
    from snapshot as s
    cross join lateral unnest(s.recent_purchase_item_ids, s.recent_purchase_times) as u(item_id, purchased_at)
),

raw_bought as (
    select
        trim(o.user_id) as user_id,
        trim(oi.item_id) as item_id,
        floor(extract(epoch from max(o.ordered_at)))::bigint as purchased_at
    from {{ source('raw', 'orders') }} as o
    join {{ source('raw', 'order_items') }} as oi on trim(oi.order_id) = trim(o.order_id)
    cross join params as p
    where o.ordered_at < p.cutoff and o.ordered_at >= p.cutoff - {{ window_days }} * interval '24 hours'
    group by trim(o.user_id), trim(oi.item_id)
)

select * from misaligned
union all
select
    coalesce(m.user_id, b.user_id) as user_id,
    coalesce(m.item_id, b.item_id) as item_id,
    m.purchased_at as mart_time,
    b.purchased_at as raw_time
from mart as m
full outer join raw_bought as b on b.user_id = m.user_id and b.item_id = m.item_id
where m.purchased_at is distinct from b.purchased_at

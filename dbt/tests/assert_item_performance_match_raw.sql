-- Point-in-time check for item_performance, recomputed from raw: for the var as_of snapshot, each item's
-- 30-day views/clicks/add-to-carts/conversions/revenue must equal those over raw rows in
-- [as_of - 30 days, as_of) 00:00 UTC. A row returned means events/orders on or after the cutoff were used
-- (or rows before it were missed).
{%- set as_of = as_of_date() %}

with params as (
    select date '{{ as_of }}' as as_of, {{ cutoff_ts(as_of) }} as cutoff
),

events as (
    select
        nullif(trim(e.item_id), '') as item_id,
        count(*) filter (where lower(trim(e.event_type)) = 'view') as views_30d,
        count(*) filter (where lower(trim(e.event_type)) = 'click') as clicks_30d,
        count(*) filter (where lower(trim(e.event_type)) = 'add_to_cart') as add_to_cart_30d
    from {{ source('raw', 'events') }} as e
    cross join params as p
    where e.occurred_at < p.cutoff and e.occurred_at >= p.cutoff - 30 * interval '24 hours'
    group by nullif(trim(e.item_id), '')
),

sales as (
    select
        trim(oi.item_id) as item_id,
        count(distinct o.order_id) as conversions_30d,
        sum(oi.quantity * oi.unit_price) as revenue_30d
    from {{ source('raw', 'order_items') }} as oi
    join {{ source('raw', 'orders') }} as o on trim(o.order_id) = trim(oi.order_id)
    cross join params as p
    where o.ordered_at < p.cutoff and o.ordered_at >= p.cutoff - 30 * interval '24 hours'
    group by trim(oi.item_id)
)

select
    i.item_id,
    i.views_30d, e.views_30d as raw_views_30d,
    i.clicks_30d, e.clicks_30d as raw_clicks_30d,
    i.add_to_cart_30d, e.add_to_cart_30d as raw_add_to_cart_30d,
    i.conversions_30d, s.conversions_30d as raw_conversions_30d,
    i.revenue_30d, s.revenue_30d as raw_revenue_30d
from {{ ref('item_performance') }} as i
cross join params as p
left join events as e on e.item_id = i.item_id
left join sales as s on s.item_id = i.item_id
where i.as_of = p.as_of
  and (
    i.views_30d <> coalesce(e.views_30d, 0)
    or i.clicks_30d <> coalesce(e.clicks_30d, 0)
    or i.add_to_cart_30d <> coalesce(e.add_to_cart_30d, 0)
    or i.conversions_30d <> coalesce(s.conversions_30d, 0)
    or abs(i.revenue_30d - coalesce(s.revenue_30d, 0)) > 0.005
  )

-- Point-in-time check, recomputed straight from raw (not from the intermediates): for the var as_of snapshot,
-- each customer's order and event aggregates must equal those over raw rows with timestamp < as_of 00:00 UTC.
-- A row returned means the mart read data from on/after the cutoff, or missed rows before it (e.g. a late
-- arrival the incremental models did not pick up).
{%- set as_of = as_of_date() %}

with params as (
    select date '{{ as_of }}' as as_of, {{ cutoff_ts(as_of) }} as cutoff
),

orders as (
    select
        trim(o.user_id) as user_id,
        count(*) as frequency,
        sum(o.amount) as monetary_total,
        max(o.ordered_at) as last_order_at
    from {{ source('raw', 'orders') }} as o
    cross join params as p
    where o.ordered_at < p.cutoff
    group by trim(o.user_id)
),

events as (
    select
        nullif(trim(e.user_id), '') as user_id,
        count(*) filter (where lower(trim(e.event_type)) = 'click' and e.occurred_at >= p.cutoff - 7 * interval '24 hours')
            as clicks_7d,
        count(*) filter (where lower(trim(e.event_type)) = 'view' and e.occurred_at >= p.cutoff - 90 * interval '24 hours')
            as views_90d,
        count(*) filter (
            where lower(trim(e.event_type)) = 'add_to_cart' and e.occurred_at >= p.cutoff - 30 * interval '24 hours'
        ) as add_to_cart_30d,
        count(*) filter (where lower(trim(e.event_type)) = 'search' and e.occurred_at >= p.cutoff - 90 * interval '24 hours')
            as searches_90d,
        max(e.occurred_at) as last_event_at
    from {{ source('raw', 'events') }} as e
    cross join params as p
    where e.occurred_at < p.cutoff and nullif(trim(e.user_id), '') is not null
    group by nullif(trim(e.user_id), '')
)

select
    f.user_id,
    f.frequency, o.frequency as raw_frequency,
    f.monetary_total, o.monetary_total as raw_monetary_total,
    f.last_order_at, o.last_order_at as raw_last_order_at,
    f.clicks_7d, e.clicks_7d as raw_clicks_7d,
    f.views_90d, e.views_90d as raw_views_90d,
    f.add_to_cart_30d, e.add_to_cart_30d as raw_add_to_cart_30d,
    f.searches_90d, e.searches_90d as raw_searches_90d,
    f.last_event_at, e.last_event_at as raw_last_event_at
from {{ ref('user_features') }} as f
cross join params as p
left join orders as o on o.user_id = f.user_id
left join events as e on e.user_id = f.user_id
where f.as_of = p.as_of
  and (
    f.frequency <> coalesce(o.frequency, 0)
    or abs(f.monetary_total - coalesce(o.monetary_total, 0)) > 0.005
    or f.last_order_at is distinct from o.last_order_at
    or f.clicks_7d <> coalesce(e.clicks_7d, 0)
    or f.views_90d <> coalesce(e.views_90d, 0)
    or f.add_to_cart_30d <> coalesce(e.add_to_cart_30d, 0)
    or f.searches_90d <> coalesce(e.searches_90d, 0)
    or f.last_event_at is distinct from e.last_event_at
  )

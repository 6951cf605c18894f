-- Labels recomputed from raw for the var as_of cutoff: revenue/orders of raw.orders in
-- [as_of, as_of + horizon_days) 00:00 UTC, one label per user_features row of that cutoff.
{%- set as_of = as_of_date() %}
{%- set horizon = positive_int_var('horizon_days') %}

with params as (
    select date '{{ as_of }}' as cutoff, {{ cutoff_ts(as_of) }} as window_start,
        {{ cutoff_ts(as_of) }} + {{ horizon }} * interval '24 hours' as window_end
),

raw_labels as (
    select trim(o.user_id) as user_id, count(*) as orders, sum(o.amount) as revenue
    from {{ source('raw', 'orders') }} as o cross join params as p
    where o.ordered_at >= p.window_start and o.ordered_at < p.window_end
    group by trim(o.user_id)
),

features as (
    select f.user_id from {{ ref('user_features') }} as f cross join params as p where f.as_of = p.cutoff
),

labels as (
    select l.* from {{ ref('ltv_labels') }} as l cross join params as p
    where l.cutoff = p.cutoff and l.horizon_days = {{ horizon }}
)

select f.user_id, l.user_id is null as missing_label, l.orders, r.orders as raw_orders, l.revenue, r.revenue as raw_revenue
from features as f
left join labels as l on l.user_id = f.user_id
left join raw_labels as r on r.user_id = f.user_id
where l.user_id is null
   or l.orders <> coalesce(r.orders, 0)
   or abs(l.revenue - coalesce(r.revenue, 0)) > 0.005

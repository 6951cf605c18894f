-- Point-in-time item performance for cutoff var as_of: 30-day counts plus exponentially time-decayed
-- versions (weight 0.5 ^ (age_days / decay_half_life_days), age_days = as_of - day, so the day before as_of
-- weighs 0.5^(1/half_life)), and commercial_score, which alone ranks the classic non-personal feed:
--
--   commercial_score = 0.5 * r(revenue_decayed) + 0.3 * r(conversions_decayed)
--                    + 0.1 * r(add_to_cart_decayed) + 0.1 * r(views_decayed + clicks_decayed)
--   r(x) = 0 when x = 0, else cume_dist of x among this snapshot's items (the best item gets 1).
--
-- so it lies in [0, 1], is 1 for an item that leads on every signal and 0 for one never touched.
-- Uses only rows with timestamp < as_of 00:00 UTC, looking back at most max(30, 10 half-lives) days (older
-- rows weigh < 0.1%). Stock and catalogue attributes are those in force at the cutoff (int_items; serving
-- filters on in_stock and recommendable).
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='as_of',
    on_schema_change='append_new_columns',
    indexes=[{'columns': ['as_of', 'item_id'], 'unique': True}, {'columns': ['item_id']}],
) }}
{%- set as_of = as_of_date() %}
{%- set half_life = positive_int_var('decay_half_life_days') %}
{%- set lookback = [30, half_life * 10] | max %}

with params as (
    select date '{{ as_of }}' as as_of, {{ cutoff_ts(as_of) }} as cutoff
),

items as (
    select i.*
    from {{ ref('int_items') }} as i
    cross join params as p
    where i.first_seen_at is null or i.first_seen_at < p.cutoff
),

activity as (
    select
        a.item_id,
        {%- for m in ['views', 'clicks', 'add_to_cart'] %}
        sum(a.{{ m }}) filter (where a.activity_date >= p.as_of - 30) as {{ m }}_30d,
        sum(a.{{ m }} * {{ decay_weight('a.activity_date', 'p.as_of', half_life) }}) as {{ m }}_decayed,
        {%- endfor %}
        max(a.last_event_at) as last_event_at
    from {{ ref('int_item_daily_activity') }} as a
    cross join params as p
    where a.activity_date < p.as_of and a.activity_date >= p.as_of - {{ lookback }}
    group by a.item_id
),

sales as (
    select
        s.item_id,
        sum(s.orders) filter (where s.sale_date >= p.as_of - 30) as conversions_30d,
        sum(s.units_sold) filter (where s.sale_date >= p.as_of - 30) as units_sold_30d,
        sum(s.revenue) filter (where s.sale_date >= p.as_of - 30) as revenue_30d,
        sum(s.orders * {{ decay_weight('s.sale_date', 'p.as_of', half_life) }}) as conversions_decayed,
        sum(s.revenue * {{ decay_weight('s.sale_date', 'p.as_of', half_life) }}) as revenue_decayed,
        max(s.last_sold_at) as last_sold_at
    from {{ ref('int_item_daily_sales') }} as s
    cross join params as p
    where s.sale_date < p.as_of and s.sale_date >= p.as_of - {{ lookback }}
    group by s.item_id
),

base as (
    select
        i.item_id,
        i.category,
        i.price,
        i.in_stock,
        i.is_repeat_purchase,
        i.in_catalog,
        i.recommendable,
        coalesce(a.views_30d, 0)::int as views_30d,
        coalesce(a.clicks_30d, 0)::int as clicks_30d,
        coalesce(a.add_to_cart_30d, 0)::int as add_to_cart_30d,
        coalesce(s.conversions_30d, 0)::int as conversions_30d,
        coalesce(s.units_sold_30d, 0)::int as units_sold_30d,
        coalesce(s.revenue_30d, 0)::double precision as revenue_30d,
        coalesce(a.views_decayed, 0)::double precision as views_decayed,
        coalesce(a.clicks_decayed, 0)::double precision as clicks_decayed,
        coalesce(a.add_to_cart_decayed, 0)::double precision as add_to_cart_decayed,
        coalesce(s.conversions_decayed, 0)::double precision as conversions_decayed,
        coalesce(s.revenue_decayed, 0)::double precision as revenue_decayed,
        a.last_event_at,
        s.last_sold_at
    from items as i
    left join activity as a on a.item_id = i.item_id
    left join sales as s on s.item_id = i.item_id
)

select
    b.item_id,
    p.as_of,
    p.cutoff as feature_timestamp,
    b.category,
    b.price,
    b.in_stock,
    b.is_repeat_purchase,
    b.in_catalog,
    b.recommendable,
    b.views_30d,
    b.clicks_30d,
    b.add_to_cart_30d,
    {{ safe_ratio('b.add_to_cart_30d', 'b.views_30d') }} as add_to_cart_rate_30d,
    b.conversions_30d,
    b.units_sold_30d,
    b.revenue_30d,
    b.views_decayed,
    b.clicks_decayed,
    b.add_to_cart_decayed,
    {{ safe_ratio('b.add_to_cart_decayed', 'b.views_decayed') }} as add_to_cart_rate_decayed,
    b.conversions_decayed,
    b.revenue_decayed,
    (
        0.5 * {{ rank01('b.revenue_decayed') }}
        + 0.3 * {{ rank01('b.conversions_decayed') }}
        + 0.1 * {{ rank01('b.add_to_cart_decayed') }}
        + 0.1 * {{ rank01('b.views_decayed + b.clicks_decayed') }}
    )::double precision as commercial_score,
    b.last_event_at,
    b.last_sold_at
from base as b
cross join params as p

-- Point-in-time customer features: one row per customer that exists before var as_of (first_seen_at < as_of
-- 00:00 UTC), computed only from rows with timestamp < as_of 00:00 UTC. Each run adds (or, re-run,
-- replaces) the as_of snapshot; backfilling many as_of dates builds the training history.
-- Every count/amount is filled (0) so a transaction-log-only shop still gets complete rows.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='as_of',
    on_schema_change='append_new_columns',
    indexes=[{'columns': ['as_of', 'user_id'], 'unique': True}, {'columns': ['user_id']}],
) }}
{%- set as_of = as_of_date() %}
{%- set windows = [7, 30, 90] %}
{%- set order_windows = [30, 90, 365] %}
{%- set counts = ['clicks', 'views', 'add_to_cart', 'referral_purchases'] %}

with params as (
    select date '{{ as_of }}' as as_of, {{ cutoff_ts(as_of) }} as cutoff
),

customers as (
    select c.*
    from {{ ref('int_customers') }} as c
    cross join params as p
    where c.first_seen_at < p.cutoff
),

activity as (
    select
        a.user_id,
        {%- for w in windows %}
        {%- for m in counts + ['dwell_seconds'] %}
        sum(a.{{ m }}) filter (where a.activity_date >= p.as_of - {{ w }}) as {{ m }}_{{ w }}d,
        {%- endfor %}
        {%- endfor %}
        sum(a.searches) filter (where a.activity_date >= p.as_of - 30) as searches_30d,
        sum(a.searches) filter (where a.activity_date >= p.as_of - 90) as searches_90d,
        sum(a.referral_purchase_amount) filter (where a.activity_date >= p.as_of - 90)
            as referral_purchase_amount_90d,
        sum(a.events) as events_total,
        max(a.last_event_at) as last_event_at
    from {{ ref('int_user_daily_activity') }} as a
    cross join params as p
    where a.activity_date < p.as_of
    group by a.user_id
),

orders as (
    select
        o.user_id,
        sum(o.orders) as frequency,
        sum(o.revenue) as monetary_total,
        {%- for w in order_windows %}
        sum(o.orders) filter (where o.order_date >= p.as_of - {{ w }}) as orders_{{ w }}d,
        sum(o.revenue) filter (where o.order_date >= p.as_of - {{ w }}) as revenue_{{ w }}d,
        {%- endfor %}
        sum(o.referral_orders) as referral_orders,
        min(o.first_ordered_at) as first_order_at,
        max(o.last_ordered_at) as last_order_at
    from {{ ref('int_user_daily_orders') }} as o
    cross join params as p
    where o.order_date < p.as_of
    group by o.user_id
),

preferences as (
    select
        pr.user_id,
        count(*) filter (where pr.kind = 'wishlist') as wishlist_count,
        count(*) filter (where pr.kind = 'saved') as saved_count,
        count(distinct pr.category) filter (where pr.kind = 'profile_category') as profile_category_count
    from {{ ref('stg_preferences') }} as pr
    cross join params as p
    where pr.created_at < p.cutoff
    group by pr.user_id
),

favourite as (
    select distinct on (user_id) user_id, category
    from {{ ref('user_category_propensity') }}
    where as_of = date '{{ as_of }}'
    order by user_id, propensity desc, category
)

select
    c.user_id,
    p.as_of,
    p.cutoff as feature_timestamp,

    -- RFM (orders before the cutoff)
    (p.as_of - coalesce({{ utc_date('o.last_order_at') }}, {{ utc_date('c.first_seen_at') }}))::int as recency_days,
    coalesce(o.frequency, 0)::int as frequency,
    coalesce(o.monetary_total, 0)::double precision as monetary_total,
    {{ safe_ratio('o.monetary_total', 'o.frequency') }} as monetary_avg,
    (p.as_of - {{ utc_date('c.first_seen_at') }})::int as tenure_days,
    {%- for w in order_windows %}
    coalesce(o.orders_{{ w }}d, 0)::int as orders_{{ w }}d,
    coalesce(o.revenue_{{ w }}d, 0)::double precision as revenue_{{ w }}d,
    {%- endfor %}
    coalesce(o.referral_orders, 0)::int as referral_orders,
    o.first_order_at,
    o.last_order_at,

    -- referral / site engagement (events before the cutoff)
    {%- for w in windows %}
    {%- for m in counts %}
    coalesce(a.{{ m }}_{{ w }}d, 0)::int as {{ m }}_{{ w }}d,
    {%- endfor %}
    coalesce(a.dwell_seconds_{{ w }}d, 0)::double precision as dwell_seconds_{{ w }}d,
    {{ safe_ratio('a.clicks_' ~ w ~ 'd', 'a.views_' ~ w ~ 'd') }} as click_per_view_{{ w }}d,
    {{ safe_ratio('a.add_to_cart_' ~ w ~ 'd', 'a.views_' ~ w ~ 'd') }} as add_to_cart_per_view_{{ w }}d,
    {{ safe_ratio('a.referral_purchases_' ~ w ~ 'd', 'a.clicks_' ~ w ~ 'd') }} as purchase_per_click_{{ w }}d,
    {%- endfor %}
    coalesce(a.referral_purchase_amount_90d, 0)::double precision as referral_purchase_amount_90d,
    coalesce(a.searches_30d, 0)::int as searches_30d,
    coalesce(a.searches_90d, 0)::int as searches_90d,
    coalesce(a.events_total, 0)::int as events_total,
    (p.as_of - coalesce({{ utc_date('a.last_event_at') }}, {{ utc_date('c.first_seen_at') }}))::int
        as days_since_last_event,
    a.last_event_at,

    -- demographics (profile attributes are current state)
    c.is_registered,
    coalesce(c.country, 'unknown') as country,
    extract(year from p.as_of)::int - c.birth_year as age,
    coalesce(c.gender, 'unknown') as gender,
    case when c.is_registered then coalesce(c.acquisition_partner_id, 'direct') else 'unknown' end
        as acquisition_partner_id,

    -- explicit preferences (created before the cutoff)
    coalesce(pr.wishlist_count, 0)::int as wishlist_count,
    coalesce(pr.saved_count, 0)::int as saved_count,
    coalesce(pr.profile_category_count, 0)::int as profile_category_count,
    coalesce(f.category, 'unknown') as favourite_category,

    c.first_seen_at
from customers as c
cross join params as p
left join activity as a on a.user_id = c.user_id
left join orders as o on o.user_id = c.user_id
left join preferences as pr on pr.user_id = c.user_id
left join favourite as f on f.user_id = c.user_id

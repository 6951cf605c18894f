-- One row per user, item category and UTC day: the engagement behind user_category_propensity.
-- Category comes from the current catalogue ('unknown' for items it lacks). Incremental, merged on
-- (user_id, category, activity_date).
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key=['user_id', 'category', 'activity_date'],
    on_schema_change='append_new_columns',
    indexes=[
        {'columns': ['user_id', 'category', 'activity_date'], 'unique': True},
        {'columns': ['activity_date']},
    ],
) }}

with events as (
    select e.*, coalesce(i.category, 'unknown') as category
    from {{ ref('stg_events') }} as e
    left join {{ ref('stg_items') }} as i on i.item_id = e.item_id
    where e.user_id is not null
      and e.item_id is not null
    {%- if is_incremental() %}
      and e.event_date in (
        {{ days_to_rebuild(ref('stg_events'), 'event_date', 'received_at', 'activity_date', 'last_received_at') }}
      )
    {%- endif %}
)

select
    user_id,
    category,
    event_date as activity_date,
    count(*) filter (where event_type = 'click')::int as clicks,
    count(*) filter (where event_type = 'view')::int as views,
    count(*) filter (where event_type = 'add_to_cart')::int as add_to_cart,
    count(*) filter (where event_type = 'referral_purchase')::int as referral_purchases,
    max(occurred_at) as last_event_at,
    max(received_at) as last_received_at
from events
group by user_id, category, event_date

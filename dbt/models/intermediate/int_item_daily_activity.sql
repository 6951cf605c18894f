-- One row per item and UTC day with its interaction counts (all users, anonymous ones included).
-- Incremental like int_user_daily_activity, merged on (item_id, activity_date).
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key=['item_id', 'activity_date'],
    on_schema_change='append_new_columns',
    indexes=[{'columns': ['item_id', 'activity_date'], 'unique': True}, {'columns': ['activity_date']}],
) }}

with events as (
    select *
    from {{ ref('stg_events') }}
    where item_id is not null
    {%- if is_incremental() %}
      and event_date in (
        {{ days_to_rebuild(ref('stg_events'), 'event_date', 'received_at', 'activity_date', 'last_received_at') }}
      )
    {%- endif %}
)

select
    item_id,
    event_date as activity_date,
    count(*)::int as events,
    count(*) filter (where event_type = 'click')::int as clicks,
    count(*) filter (where event_type = 'view')::int as views,
    count(*) filter (where event_type = 'add_to_cart')::int as add_to_cart,
    count(*) filter (where event_type = 'referral_purchase')::int as referral_purchases,
    coalesce(sum(dwell_seconds), 0)::double precision as dwell_seconds,
    min(occurred_at) as first_event_at,
    max(occurred_at) as last_event_at,
    max(received_at) as last_received_at
from events
group by item_id, event_date

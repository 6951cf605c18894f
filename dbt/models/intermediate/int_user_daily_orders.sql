-- One row per customer and UTC order day: orders and revenue. Incremental, merged on (user_id, order_date);
-- an order's arrival time is its raw _loaded_at.
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key=['user_id', 'order_date'],
    on_schema_change='append_new_columns',
    indexes=[{'columns': ['user_id', 'order_date'], 'unique': True}, {'columns': ['order_date']}],
) }}

with orders as (
    select *
    from {{ ref('stg_orders') }}
    {%- if is_incremental() %}
    where order_date in (
        {{ days_to_rebuild(ref('stg_orders'), 'order_date', 'loaded_at', 'order_date', 'last_loaded_at') }}
    )
    {%- endif %}
)

select
    user_id,
    order_date,
    count(*)::int as orders,
    sum(amount)::numeric(14, 2) as revenue,
    count(*) filter (where is_referral)::int as referral_orders,
    coalesce(sum(amount) filter (where is_referral), 0)::numeric(14, 2) as referral_revenue,
    min(ordered_at) as first_ordered_at,
    max(ordered_at) as last_ordered_at,
    max(loaded_at) as last_loaded_at
from orders
group by user_id, order_date

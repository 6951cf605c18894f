-- One row per item and UTC order day: orders containing it, units and line revenue. Incremental, merged on
-- (item_id, sale_date); a line arrives when both its order and the line itself are loaded.
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key=['item_id', 'sale_date'],
    on_schema_change='append_new_columns',
    indexes=[{'columns': ['item_id', 'sale_date'], 'unique': True}, {'columns': ['sale_date']}],
) }}

with lines as (
    select
        oi.item_id,
        o.order_id,
        o.order_date as sale_date,
        o.ordered_at,
        oi.quantity,
        oi.line_revenue,
        greatest(o.loaded_at, oi.loaded_at) as loaded_at
    from {{ ref('stg_order_items') }} as oi
    join {{ ref('stg_orders') }} as o on o.order_id = oi.order_id
),

selected as (
    select *
    from lines
    {%- if is_incremental() %}
    where sale_date in ({{ days_to_rebuild('lines', 'sale_date', 'loaded_at', 'sale_date', 'last_loaded_at') }})
    {%- endif %}
)

select
    item_id,
    sale_date,
    count(distinct order_id)::int as orders,
    sum(quantity)::int as units_sold,
    sum(line_revenue)::numeric(14, 2) as revenue,
    min(ordered_at) as first_sold_at,
    max(ordered_at) as last_sold_at,
    max(loaded_at) as last_loaded_at
from selected
group by item_id, sale_date

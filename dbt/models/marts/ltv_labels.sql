-- Training labels: each customer's revenue and orders in [cutoff, cutoff + horizon_days) for every cutoff
-- that has a user_features snapshot. Labels read the future by definition (features never do).
-- is_complete: the whole window has been observed, i.e. cutoff + horizon_days <= data_end_date, the day
-- after the latest raw event/order (an incomplete label is a lower bound). Rebuilt for var horizon_days on
-- every run (delete+insert on horizon_days), so labels of other horizons stay and late orders are counted.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='horizon_days',
    on_schema_change='append_new_columns',
    indexes=[{'columns': ['horizon_days', 'cutoff', 'user_id'], 'unique': True}, {'columns': ['user_id']}],
) }}
{%- set horizon = positive_int_var('horizon_days') %}
{%- set data_end = data_end_date() %}

with cutoffs as (
    select distinct user_id, as_of as cutoff
    from {{ ref('user_features') }}
)

select
    c.user_id,
    c.cutoff,
    {{ horizon }}::int as horizon_days,
    (c.cutoff + {{ horizon }})::date as window_end,
    coalesce(sum(o.revenue), 0)::numeric(14, 2) as revenue,
    coalesce(sum(o.orders), 0)::int as orders,
    date '{{ data_end }}' as data_end_date,
    (c.cutoff + {{ horizon }}) <= date '{{ data_end }}' as is_complete
from cutoffs as c
left join {{ ref('int_user_daily_orders') }} as o
    on o.user_id = c.user_id
    and o.order_date >= c.cutoff
    and o.order_date < c.cutoff + {{ horizon }}
group by c.user_id, c.cutoff

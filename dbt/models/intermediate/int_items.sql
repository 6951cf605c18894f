-- Every item we know: the catalogue UNION items seen only in events or order lines (transaction-log-only
-- shops have no catalogue). Catalogue attributes are those in force at the cutoff (stg_items). Non-catalogue
-- items: category 'unknown', price = latest unit price sold, in_stock true (they are being sold),
-- is_repeat_purchase false, recommendable true.
-- first_seen_at = earliest of created_at, first event, first sale; null (catalogue item without created_at
-- and never touched) means "always existed".
{{ config(indexes=[{'columns': ['item_id'], 'unique': True}]) }}

with activity as (
    select item_id, min(first_event_at) as first_event_at
    from {{ ref('int_item_daily_activity') }}
    group by item_id
),

sales as (
    select
        item_id,
        min(first_sold_at) as first_sold_at,
        (array_agg(revenue / nullif(units_sold, 0) order by sale_date desc))[1]::numeric(12, 2) as last_unit_price
    from {{ ref('int_item_daily_sales') }}
    group by item_id
),

ids as (
    select item_id from {{ ref('stg_items') }}
    union
    select item_id from activity
    union
    select item_id from sales
)

select
    ids.item_id,
    c.item_id is not null as in_catalog,
    coalesce(c.category, 'unknown') as category,
    coalesce(c.price, s.last_unit_price) as price,
    coalesce(c.in_stock, true) as in_stock,
    coalesce(c.is_repeat_purchase, false) as is_repeat_purchase,
    coalesce(c.recommendable, true) as recommendable,
    c.brand,
    c.title,
    c.created_at,
    least(c.created_at, a.first_event_at, s.first_sold_at) as first_seen_at
from ids
left join {{ ref('stg_items') }} as c on c.item_id = ids.item_id
left join activity as a on a.item_id = ids.item_id
left join sales as s on s.item_id = ids.item_id

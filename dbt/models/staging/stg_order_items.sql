-- Order lines with their revenue.
select
    trim(order_id) as order_id,
    trim(item_id) as item_id,
    quantity,
    unit_price,
    (quantity * unit_price)::numeric(14, 2) as line_revenue,
    _loaded_at as loaded_at
from {{ source('raw', 'order_items') }}

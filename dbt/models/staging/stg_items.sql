-- Catalogue items, cleaned: category lower-case so the same category always groups together.
select
    trim(item_id) as item_id,
    coalesce(nullif(lower(trim(category)), ''), 'unknown') as category,
    price,
    nullif(trim(brand), '') as brand,
    nullif(trim(title), '') as title,
    in_stock,
    is_repeat_purchase,
    created_at,
    _loaded_at as loaded_at
from {{ source('raw', 'items') }}

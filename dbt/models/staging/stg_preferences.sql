-- Explicit preferences; categories lower-case like stg_items.category.
select
    trim(user_id) as user_id,
    lower(trim(kind)) as kind,
    nullif(trim(item_id), '') as item_id,
    nullif(lower(trim(category)), '') as category,
    created_at,
    _loaded_at as loaded_at
from {{ source('raw', 'preferences') }}

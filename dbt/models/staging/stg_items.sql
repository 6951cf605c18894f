-- Catalogue items as they were at the cutoff (var as_of), cleaned: category lower-case so the same category
-- always groups together. raw.item_versions holds every version an import wrote; macro version_as_of picks the
-- one in force at the cutoff (prices and stock flags change; a past cutoff keeps its values).
{%- set as_of = as_of_date() %}

with version_at_cutoff as (
    {{ version_as_of(source('raw', 'item_versions'), 'item_id', as_of) }}
)

select
    trim(item_id) as item_id,
    coalesce(nullif(lower(trim(category)), ''), 'unknown') as category,
    price,
    nullif(trim(brand), '') as brand,
    nullif(trim(title), '') as title,
    in_stock,
    is_repeat_purchase,
    recommendable,
    created_at,
    valid_from,
    valid_from as loaded_at
from version_at_cutoff

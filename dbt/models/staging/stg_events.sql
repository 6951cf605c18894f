-- Interactions with their UTC day; ids trimmed, event types lower-case, empty strings as null.
select
    event_id,
    lower(trim(event_type)) as event_type,
    occurred_at,
    {{ utc_date('occurred_at') }} as event_date,
    nullif(trim(user_id), '') as user_id,
    nullif(trim(partner_id), '') as partner_id,
    nullif(trim(session_id), '') as session_id,
    nullif(trim(item_id), '') as item_id,
    dwell_seconds::double precision as dwell_seconds,
    nullif(trim(search_query), '') as search_query,
    nullif(trim(order_id), '') as order_id,
    amount,
    properties,
    source,
    received_at
from {{ source('raw', 'events') }}

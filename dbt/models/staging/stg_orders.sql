-- Orders with their UTC order day.
select
    trim(order_id) as order_id,
    trim(user_id) as user_id,
    ordered_at,
    {{ utc_date('ordered_at') }} as order_date,
    amount,
    nullif(trim(referral_partner_id), '') as referral_partner_id,
    nullif(trim(referral_partner_id), '') is not null as is_referral,
    _loaded_at as loaded_at
from {{ source('raw', 'orders') }}

-- Registered users, cleaned: trimmed ids, upper-case country codes, lower-case gender, implausible birth
-- years dropped, empty strings as null.
select
    trim(user_id) as user_id,
    signup_at,
    nullif(upper(trim(country)), '') as country,
    case
        when birth_year between 1900 and extract(year from signup_at at time zone 'UTC')::int then birth_year
    end as birth_year,
    nullif(lower(trim(gender)), '') as gender,
    nullif(trim(acquisition_partner_id), '') as acquisition_partner_id,
    _loaded_at as loaded_at
from {{ source('raw', 'users') }}

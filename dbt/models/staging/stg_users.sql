-- Registered users as they were at the cutoff (var as_of), cleaned: trimmed ids, upper-case country codes,
-- lower-case gender, implausible birth years dropped, empty strings as null. raw.user_versions holds every
-- version an import wrote; macro version_as_of picks the one in force at the cutoff.
{%- set as_of = as_of_date() %}

with version_at_cutoff as (
    {{ version_as_of(source('raw', 'user_versions'), 'user_id', as_of) }}
)

select
    trim(user_id) as user_id,
    signup_at,
    nullif(upper(trim(country)), '') as country,
    case
        when birth_year between 1900 and extract(year from signup_at at time zone 'UTC')::int then birth_year
    end as birth_year,
    nullif(lower(trim(gender)), '') as gender,
    nullif(trim(acquisition_partner_id), '') as acquisition_partner_id,
    valid_from,
    valid_from as loaded_at
from version_at_cutoff

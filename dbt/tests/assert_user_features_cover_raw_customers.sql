-- Every customer known before var as_of - a raw.users row signed up, or a raw.orders row ordered, before
-- as_of 00:00 UTC - has a user_features row for as_of, and nobody else does.
{%- set as_of = as_of_date() %}

with params as (
    select date '{{ as_of }}' as as_of, {{ cutoff_ts(as_of) }} as cutoff
),

known as (
    select trim(u.user_id) as user_id
    from {{ source('raw', 'users') }} as u cross join params as p
    where u.signup_at < p.cutoff
    union
    select trim(o.user_id)
    from {{ source('raw', 'orders') }} as o cross join params as p
    where o.ordered_at < p.cutoff
),

snapshot as (
    select f.user_id
    from {{ ref('user_features') }} as f cross join params as p
    where f.as_of = p.as_of
)

select coalesce(k.user_id, s.user_id) as user_id, k.user_id is null as unexpected_row, s.user_id is null as missing_row
from known as k
full outer join snapshot as s on s.user_id = k.user_id
where k.user_id is null or s.user_id is null

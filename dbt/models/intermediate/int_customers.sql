-- Everyone who is a customer: registered users UNION everyone who ordered. Shops that import only a
-- transaction log have orders but no users rows; they still get customers (and feature rows).
-- first_seen_at = earliest of signup and first order: a customer exists for as_of T iff first_seen_at < T.
{{ config(indexes=[{'columns': ['user_id'], 'unique': True}]) }}

with buyers as (
    select user_id, min(first_ordered_at) as first_ordered_at
    from {{ ref('int_user_daily_orders') }}
    group by user_id
)

select
    user_id,
    u.user_id is not null as is_registered,
    u.signup_at,
    b.first_ordered_at,
    least(u.signup_at, b.first_ordered_at) as first_seen_at,
    u.country,
    u.birth_year,
    u.gender,
    u.acquisition_partner_id
from {{ ref('stg_users') }} as u
full outer join buyers as b using (user_id)

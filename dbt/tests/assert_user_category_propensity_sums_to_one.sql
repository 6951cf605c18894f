-- Propensities are a distribution over categories: they sum to 1 for every user and snapshot.
select user_id, as_of, sum(propensity) as total
from {{ ref('user_category_propensity') }}
group by user_id, as_of
having abs(sum(propensity) - 1) > 1e-9

-- Per experiment, arm and user exposed to it: the columns ltvfeed.experiments.analysis.USER_COLUMNS reads,
-- plus experiment and first_exposed_on. Every outcome counts from the user's first exposure (served_at) on;
-- clicks, orders and revenue end with the experiment (stopped_at; open while running), the long window
-- (long_window_revenue) runs ltv_window_days from first exposure whatever the experiment's state.
-- A plain table rebuilt from raw.exposures each run: always consistent with the log, backfills need nothing.
with experiments as (
    select
        name as experiment,
        stopped_at,
        coalesce((config ->> 'ltv_window_days')::integer, 180) as ltv_window_days
    from {{ source('experiment_registry', 'experiments') }}
),

exposures as (
    select x.exposure_id, x.experiment, x.arm, x.user_id, x.served_at
    from {{ source('exposure_log', 'exposures') }} as x
    inner join experiments as e on e.experiment = x.experiment
),

exposed as (
    select
        x.experiment,
        x.arm,
        x.user_id,
        count(*) as exposures,
        min(x.served_at) as first_exposed_at,
        e.stopped_at,
        e.ltv_window_days
    from exposures as x
    inner join experiments as e on e.experiment = x.experiment
    group by x.experiment, x.arm, x.user_id, e.stopped_at, e.ltv_window_days
),

-- A click counts for the user's experiment when it happened in the window and either carries the feed id of
-- one of their exposures in this experiment, or carries no feed id (a click attributed to another
-- experiment's feed does not count here). The two cases are disjoint (feed id null or not, and a feed id is
-- one exposure), so they are counted apart and added: each is an equi-join PostgreSQL can hash, where one
-- join with an OR compared every click with every exposed user.
window_clicks as (
    select c.user_id, c.occurred_at, c.properties ->> 'feed_id' as feed_id
    from {{ ref('stg_events') }} as c
    where c.event_type = 'click'
),

clicks as (
    select experiment, arm, user_id, count(*) as clicks
    from (
        select f.experiment, f.arm, f.user_id, c.occurred_at, f.first_exposed_at, f.stopped_at
        from exposed as f
        inner join window_clicks as c on c.user_id = f.user_id and c.feed_id is null
        union all
        select f.experiment, f.arm, f.user_id, c.occurred_at, f.first_exposed_at, f.stopped_at
        from exposed as f
        inner join exposures as x on x.experiment = f.experiment and x.user_id = f.user_id
        inner join window_clicks as c on c.feed_id = x.exposure_id
    ) as attributed
    where occurred_at >= first_exposed_at and (stopped_at is null or occurred_at < stopped_at)
    group by experiment, arm, user_id
),

orders as (
    select
        f.experiment,
        f.arm,
        f.user_id,
        count(*) filter (
            where o.ordered_at >= f.first_exposed_at and (f.stopped_at is null or o.ordered_at < f.stopped_at)
        ) as orders,
        coalesce(sum(o.amount) filter (
            where o.ordered_at >= f.first_exposed_at and (f.stopped_at is null or o.ordered_at < f.stopped_at)
        ), 0) as revenue,
        coalesce(sum(o.amount) filter (
            where o.ordered_at < f.first_exposed_at and o.ordered_at >= f.first_exposed_at - interval '30 days'
        ), 0) as pre_revenue,
        coalesce(sum(o.amount) filter (
            where o.ordered_at >= f.first_exposed_at
                and o.ordered_at < f.first_exposed_at + make_interval(days => f.ltv_window_days)
        ), 0) as long_window_revenue
    from exposed as f
    inner join {{ ref('stg_orders') }} as o on o.user_id = f.user_id
    group by f.experiment, f.arm, f.user_id
),

-- The LTV model's prediction (expected_ltv) in force at first exposure (latest snapshot as_of on or before
-- that UTC day) and the latest one (up to the experiment's stop day). Horizons equal to the experiment's long
-- window are preferred; then the newest snapshot, then the newest revision. No prediction: null.
predictions as (
    select
        f.experiment,
        f.arm,
        f.user_id,
        (
            select p.expected_ltv from {{ source('ltv', 'user_ltv_predictions') }} as p
            where p.user_id = f.user_id and p.as_of <= {{ utc_date('f.first_exposed_at') }}
            order by (p.horizon_days = f.ltv_window_days) desc, p.as_of desc, p.revision desc
            limit 1
        ) as predicted_ltv_first,
        (
            select p.expected_ltv from {{ source('ltv', 'user_ltv_predictions') }} as p
            where p.user_id = f.user_id and (f.stopped_at is null or p.as_of <= {{ utc_date('f.stopped_at') }})
            order by (p.horizon_days = f.ltv_window_days) desc, p.as_of desc, p.revision desc
            limit 1
        ) as predicted_ltv_last
    from exposed as f
)

select
    f.experiment,
    f.arm,
    f.user_id,
    f.exposures::integer as exposures,
    coalesce(c.clicks, 0)::integer as clicks,
    (coalesce(o.orders, 0) > 0)::integer as converted,
    coalesce(o.orders, 0)::integer as orders,
    coalesce(o.revenue, 0)::double precision as revenue,
    coalesce(o.pre_revenue, 0)::double precision as pre_revenue,
    coalesce(o.long_window_revenue, 0)::double precision as long_window_revenue,
    p.predicted_ltv_first::double precision as predicted_ltv_first,
    p.predicted_ltv_last::double precision as predicted_ltv_last,
    {{ utc_date('f.first_exposed_at') }} as first_exposed_on
from exposed as f
left join clicks as c using (experiment, arm, user_id)
left join orders as o using (experiment, arm, user_id)
left join predictions as p using (experiment, arm, user_id)

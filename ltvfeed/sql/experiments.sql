-- A/B experiments: the registry (ops.experiments, ops.experiment_changes) and the exposure log (raw.exposures).
-- Applied by ltvfeed.experiments.registry.ensure_schema and with the warehouse (ensure_warehouse), so the dbt
-- model experiment_user_metrics always finds its sources. Idempotent.
create schema if not exists raw;
create schema if not exists ops;

create table if not exists ops.experiments (
    name               text primary key,
    config             jsonb not null,
    status             text not null default 'draft' check (status in ('draft', 'running', 'stopped')),
    created_at         timestamptz not null default now(),
    started_at         timestamptz,
    stopped_at         timestamptz
);
create table if not exists ops.experiment_changes (
    name     text not null references ops.experiments (name),
    at       timestamptz not null default now(),
    change   jsonb not null
);

-- One row per served feed of a user in an experiment (written by ltvfeed.experiments.exposures). exposure_id is
-- the feed id the API hands out with the feed; later clicks carry it as properties->>'feed_id'. Insert-once:
-- a repeated id is a duplicate, never a second row.
create table if not exists raw.exposures (
    exposure_id   text primary key,
    experiment    text not null,
    arm           text not null,
    user_id       text not null,
    generation    text,                      -- the feed_generation run whose feed was served
    feed          text,                      -- what the arm served (classic, personalised, ...)
    item_ids      text[] not null,
    positions     smallint[] not null,       -- position (1-based) of item_ids[i] in the served feed
    served_at     timestamptz not null,
    received_at   timestamptz not null default now(),
    check (cardinality(item_ids) = cardinality(positions))
);
create index if not exists exposures_experiment_user on raw.exposures (experiment, user_id, served_at);

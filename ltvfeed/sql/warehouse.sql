-- Warehouse layout. raw.* is the landing zone every source writes into (file imports, the simulator, and later
-- the partner event-collection API); dbt owns staging/intermediate/marts; ops.* records loads; ground_truth.*
-- is the simulator's hidden truth, readable by evaluation only. Idempotent: safe to run on every start.

-- one schema change at a time (several processes may start the stack together); released at commit
select pg_advisory_xact_lock(hashtext('ltvfeed.warehouse_schema'));

create schema if not exists raw;
create schema if not exists ops;
create schema if not exists ground_truth;
create schema if not exists staging;
create schema if not exists intermediate;
create schema if not exists marts;

-- one builder of the cutoff-dependent models at a time (ltvfeed/warehouse/lease.py)
create table if not exists ops.warehouse_lease (
    name        text primary key,
    holder      text not null,
    acquired_at timestamptz not null default now()
);

create table if not exists ops.import_batches (
    batch_id        bigserial primary key,
    kind            text not null,
    source          text not null,            -- file path, 'simulator', later 'collector'
    content_sha256  text,                     -- same kind + same content = same batch (idempotent re-import)
    rows_total      bigint not null default 0,
    rows_loaded     bigint not null default 0,
    rows_duplicate  bigint not null default 0,
    rows_quarantined bigint not null default 0,
    loaded_at       timestamptz not null default now(),
    unique (kind, content_sha256)
);
-- of rows_loaded, those that replaced an earlier version of the row (users, items: the newer import wins)
alter table ops.import_batches add column if not exists rows_updated bigint not null default 0;

create table if not exists ops.quarantine (
    quarantine_id   bigserial primary key,
    batch_id        bigint not null references ops.import_batches (batch_id),
    kind            text not null,
    row_number      bigint not null,          -- 1-based data row in the source file
    reason          text not null,
    row_data        jsonb not null,
    quarantined_at  timestamptz not null default now()
);
-- jsonb/text cannot hold NUL: rows with one show it as U+2400 in row_data/reason, and row_bytes keeps the exact
-- JSON document of the row (UTF-8; NUL escaped as \u0000): convert_from(row_bytes, 'UTF8')::json
alter table ops.quarantine add column if not exists row_bytes bytea;
create index if not exists quarantine_batch on ops.quarantine (batch_id, row_number);

create table if not exists raw.users (
    user_id                 text primary key,
    signup_at               timestamptz not null,
    country                 text,
    birth_year              integer,
    gender                  text,
    acquisition_partner_id  text,             -- referral partner that brought the user, null = direct
    _batch_id               bigint,
    _loaded_at              timestamptz not null default now()
);

create table if not exists raw.items (
    item_id             text primary key,
    category            text not null,
    price               numeric(12, 2) not null check (price >= 0),
    brand               text,
    title               text,
    in_stock            boolean not null default true,
    is_repeat_purchase  boolean not null default false,  -- consumables may be recommended again after purchase
    created_at          timestamptz,
    _batch_id           bigint,
    _loaded_at          timestamptz not null default now(),
    recommendable       boolean not null default true   -- false: never in a feed (fees, coupons, gift cards)
);
alter table raw.items add column if not exists recommendable boolean not null default true;

-- Users and items change (prices, stock, profiles): raw.users / raw.items hold the current row (an import
-- replaces a changed row: the newer import wins) and raw.user_versions / raw.item_versions every version, with
-- valid_from = when it was loaded, so that dbt can take the version as of a cutoff. Triggers record the versions,
-- whoever writes the tables. Orders, lines, events and preferences are insert-once (a known key is a duplicate).
create table if not exists raw.user_versions (
    version_id              bigserial primary key,
    user_id                 text not null,
    signup_at               timestamptz not null,
    country                 text,
    birth_year              integer,
    gender                  text,
    acquisition_partner_id  text,
    valid_from              timestamptz not null,
    _batch_id               bigint
);
create index if not exists user_versions_key on raw.user_versions (user_id, valid_from);

create table if not exists raw.item_versions (
    version_id          bigserial primary key,
    item_id             text not null,
    category            text not null,
    price               numeric(12, 2) not null,
    brand               text,
    title               text,
    in_stock            boolean not null,
    is_repeat_purchase  boolean not null,
    recommendable       boolean not null,
    created_at          timestamptz,
    valid_from          timestamptz not null,
    _batch_id           bigint
);
create index if not exists item_versions_key on raw.item_versions (item_id, valid_from);

create or replace function raw.record_user_versions() returns trigger language plpgsql as $$
begin
    insert into raw.user_versions
        (user_id, signup_at, country, birth_year, gender, acquisition_partner_id, valid_from, _batch_id)
    select user_id, signup_at, country, birth_year, gender, acquisition_partner_id, _loaded_at, _batch_id
      from changed_rows;
    return null;
end $$;

create or replace function raw.record_item_versions() returns trigger language plpgsql as $$
begin
    insert into raw.item_versions (item_id, category, price, brand, title, in_stock, is_repeat_purchase,
                                   recommendable, created_at, valid_from, _batch_id)
    select item_id, category, price, brand, title, in_stock, is_repeat_purchase, recommendable, created_at,
           _loaded_at, _batch_id
      from changed_rows;
    return null;
end $$;

do $$
begin
    -- warehouses created before versions existed: their rows become each key's first version
    if not exists (select from pg_trigger where tgname = 'users_versions_insert') then
        insert into raw.user_versions
            (user_id, signup_at, country, birth_year, gender, acquisition_partner_id, valid_from, _batch_id)
        select user_id, signup_at, country, birth_year, gender, acquisition_partner_id, _loaded_at, _batch_id
          from raw.users;
    end if;
    if not exists (select from pg_trigger where tgname = 'items_versions_insert') then
        insert into raw.item_versions (item_id, category, price, brand, title, in_stock, is_repeat_purchase,
                                       recommendable, created_at, valid_from, _batch_id)
        select item_id, category, price, brand, title, in_stock, is_repeat_purchase, recommendable, created_at,
               _loaded_at, _batch_id
          from raw.items;
    end if;
end $$;

create or replace trigger users_versions_insert after insert on raw.users
    referencing new table as changed_rows for each statement execute function raw.record_user_versions();
create or replace trigger users_versions_update after update on raw.users
    referencing new table as changed_rows for each statement execute function raw.record_user_versions();
create or replace trigger items_versions_insert after insert on raw.items
    referencing new table as changed_rows for each statement execute function raw.record_item_versions();
create or replace trigger items_versions_update after update on raw.items
    referencing new table as changed_rows for each statement execute function raw.record_item_versions();

create table if not exists raw.orders (
    order_id             text primary key,
    user_id              text not null,
    ordered_at           timestamptz not null,
    amount               numeric(12, 2) not null check (amount >= 0),
    referral_partner_id  text,                -- attributed referral partner, null = not referred
    _batch_id            bigint,
    _loaded_at           timestamptz not null default now()
);
create index if not exists orders_user_time on raw.orders (user_id, ordered_at);

create table if not exists raw.order_items (
    order_id    text not null,
    item_id     text not null,
    quantity    integer not null check (quantity > 0),
    unit_price  numeric(12, 2) not null check (unit_price >= 0),
    _batch_id   bigint,
    _loaded_at  timestamptz not null default now(),
    primary key (order_id, item_id)
);

-- One row per interaction, from any channel. partner_id null = the shop's own site (browsing sessions);
-- source says who delivered it ('simulator', 'import', later 'collector'); properties carries extras
-- (e.g. A/B experiment and arm on feed impressions) without schema changes.
create table if not exists raw.events (
    event_id       text primary key,
    event_type     text not null,             -- click | view | add_to_cart | referral_purchase | search
    occurred_at    timestamptz not null,
    user_id        text,
    partner_id     text,
    session_id     text,
    item_id        text,
    dwell_seconds  real check (dwell_seconds is null or dwell_seconds >= 0),
    search_query   text,
    order_id       text,
    amount         numeric(12, 2) check (amount is null or amount >= 0),
    properties     jsonb,
    source         text not null default 'import',
    received_at    timestamptz not null default now(),
    _batch_id      bigint
);
create index if not exists events_time on raw.events (occurred_at);
create index if not exists events_user_time on raw.events (user_id, occurred_at);

create table if not exists raw.preferences (
    user_id     text not null,
    kind        text not null,                -- wishlist | saved | profile_category
    item_id     text,
    category    text,
    created_at  timestamptz not null,
    _batch_id   bigint,
    _loaded_at  timestamptz not null default now(),
    unique nulls not distinct (user_id, kind, item_id, category)
);

create table if not exists ground_truth.future_spend (
    user_id          text not null,
    observed_until   timestamptz not null,    -- end of the observed window (exclusive)
    horizon_days     integer not null,
    spend            numeric(14, 2) not null,
    orders           integer not null,
    primary key (user_id, observed_until, horizon_days)
);

create table if not exists ground_truth.user_traits (
    user_id           text primary key,
    purchase_rate     double precision,       -- expected purchases per day while alive
    churn_day         double precision,       -- day index (from simulation start) the user churns
    spend_level       double precision,
    price_sensitivity double precision,
    favourite_category text
);

-- LTV predictions, written by batch scoring (ltvfeed.training.ltv_scoring), read by Feast (feature view
-- user_ltv) and by anyone in SQL. Created here rather than by dbt because Python writes it, not a SQL
-- transformation: `feast apply` (run by ltv_pipeline before any model exists) needs the table to exist, and
-- `dbt build --full-refresh` must never drop predictions. dbt declares it as source ltv.user_ltv_predictions.
-- One row per customer, snapshot (as_of), horizon and model version; re-scoring the same four replaces them.
-- feature_timestamp = as_of 00:00 UTC + `revision` microseconds: each scoring of an as_of by another model
-- version than the previous one is one microsecond newer, so the newest scoring wins in point-in-time joins
-- and in Redis (which keeps the stored value when a write has the same event time).
create table if not exists marts.user_ltv_predictions (
    user_id            text not null,
    as_of              date not null,
    horizon_days       integer not null,
    model_name         text not null,
    model_version      text not null,
    prob_return        double precision not null,
    expected_ltv       double precision not null,
    p10                double precision not null,
    p50                double precision not null,
    p90                double precision not null,
    revision           integer not null default 0,
    feature_timestamp  timestamptz not null,
    scored_at          timestamptz not null default now(),
    primary key (as_of, horizon_days, model_name, model_version, user_id)
);
create index if not exists user_ltv_predictions_time on marts.user_ltv_predictions (feature_timestamp);

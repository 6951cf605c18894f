-- The partner event collector (ltvfeed collect): partners and their encrypted secrets, and the preference
-- event log. Interactions go to raw.events (event_id = '<partner>:<sender event id>', source 'collector'),
-- the shop's order webhook to raw.orders / raw.order_items (insert once per order_id).
create table if not exists ops.partners (
    partner_id                 text primary key,
    secret_encrypted           bytea not null,          -- Fernet token; the key comes from settings
    previous_secret_encrypted  bytea,                   -- still accepted until previous_valid_until
    previous_valid_until       timestamptz,
    rate_limit_per_s           integer check (rate_limit_per_s is null or rate_limit_per_s > 0),
    created_at                 timestamptz not null default now(),
    rotated_at                 timestamptz,
    revoked_at                 timestamptz
);

create table if not exists raw.preference_events (
    event_id     text primary key,                      -- '<partner>:<sender event id>'
    event_type   text not null,                         -- wishlist_add | wishlist_remove | saved_item | profile_category
    occurred_at  timestamptz not null,
    user_id      text not null,
    partner_id   text not null,
    item_id      text,
    category     text,
    properties   jsonb,
    received_at  timestamptz not null default now()
);
create index if not exists preference_events_user on raw.preference_events (user_id, occurred_at);

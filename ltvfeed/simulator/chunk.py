"""One chunk of users, simulated end to end and turned into Arrow tables with globally unique ids.

Chunks are independent except for id numbering, which continues from the previous chunk (``IdCounters``), so
the whole shop is the concatenation of its chunks and memory stays bounded by the chunk size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ltvfeed.simulator.activity import Orders, draw_orders, draw_sessions, draw_views
from ltvfeed.simulator.catalog import Catalog
from ltvfeed.simulator.columns import SECONDS_PER_DAY, constant, money, pick, sequential_ids, timestamps
from ltvfeed.simulator.config import SimulationConfig
from ltvfeed.simulator.events import EVENT_TYPES, Events, build_events
from ltvfeed.simulator.population import Partners, Population, draw_population
from ltvfeed.simulator.preferences import PREFERENCE_KINDS, Preferences, draw_preferences
from ltvfeed.simulator.schema import GROUND_TRUTH_SCHEMAS, RAW_SCHEMAS
from ltvfeed.simulator.vocab import CATEGORIES, COUNTRIES, GENDERS

ID_WIDTH = {"u": 7, "s": 10, "o": 9, "e": 11}
CATEGORY_NAMES = pa.array([c.name for c in CATEGORIES])
EVENT_SOURCE = "simulator"


@dataclass
class IdCounters:
    """Next free number per id kind; advanced by each chunk in turn."""

    session: int = 1
    order: int = 1
    event: int = 1


@dataclass(frozen=True)
class ChunkTables:
    users: pa.Table
    orders: pa.Table
    order_items: pa.Table
    events: pa.Table
    preferences: pa.Table
    future_spend: pa.Table
    user_traits: pa.Table

    def raw(self) -> dict[str, pa.Table]:
        return {k: getattr(self, k) for k in RAW_SCHEMAS if k != "items"}

    def ground_truth(self) -> dict[str, pa.Table]:
        return {k: getattr(self, k) for k in GROUND_TRUTH_SCHEMAS}


def _users_table(config: SimulationConfig, partners: Partners, pop: Population, user_ids: pa.Array) -> pa.Table:
    return pa.Table.from_arrays(
        [
            user_ids,
            timestamps(config.start, np.floor(pop.signup_day * SECONDS_PER_DAY)),
            pick(pa.array([c[0] for c in COUNTRIES]), pop.country),
            pa.array(pop.birth_year, type=pa.int32(), mask=pop.birth_year_missing),
            pick(pa.array(GENDERS), pop.gender, pop.gender_missing),
            pick(partners.ids, pop.partner, pop.partner < 0),
        ],
        schema=RAW_SCHEMAS["users"],
    )


def _traits_table(config: SimulationConfig, catalog: Catalog, pop: Population, user_ids: pa.Array) -> pa.Table:
    """Hidden truth per user; spend_level is the expected order value in currency units."""
    line_value = (
        catalog.line_value[:, pop.price_bin].T + pop.basket[:, None] * catalog.line_value_per_basket[:, pop.price_bin].T
    )
    expected_lines = 1.0 + config.params.lines_mean * pop.basket
    spend_level = expected_lines * (pop.taste * line_value).sum(axis=1) / 100.0
    return pa.Table.from_arrays(
        [
            user_ids,
            pa.array(pop.purchase_rate),
            pa.array(pop.churn_day),
            pa.array(spend_level),
            pa.array(pop.price_sensitivity),
            pick(CATEGORY_NAMES, np.argmax(pop.taste, axis=1)),
        ],
        schema=GROUND_TRUTH_SCHEMAS["user_traits"],
    )


def _future_spend_table(
    config: SimulationConfig, pop: Population, user_ids: pa.Array, orders: Orders, order_cents: np.ndarray
) -> pa.Table:
    """Spend and order count in [end, end + H) for every user and horizon, zeros included."""
    end = config.days * SECONDS_PER_DAY
    spend, count = [], []
    for horizon in config.horizons:
        hit = (orders.second >= end) & (orders.second < end + horizon * SECONDS_PER_DAY)
        spend.append(np.bincount(orders.user[hit], weights=order_cents[hit], minlength=pop.n))
        count.append(np.bincount(orders.user[hit], minlength=pop.n))
    n_h = len(config.horizons)
    return pa.Table.from_arrays(
        [
            pick(user_ids, np.repeat(np.arange(pop.n), n_h)),
            timestamps(config.start, np.full(pop.n * n_h, end)),
            pa.array(np.tile(np.array(config.horizons, dtype=np.int32), pop.n)),
            money(np.round(np.stack(spend, axis=1).ravel()).astype(np.int64)),
            pa.array(np.stack(count, axis=1).ravel().astype(np.int32)),
        ],
        schema=GROUND_TRUTH_SCHEMAS["future_spend"],
    )


def _observed_orders(
    config: SimulationConfig, catalog: Catalog, partners: Partners, orders: Orders, user_ids: pa.Array, next_id: int
) -> tuple[pa.Table, pa.Table, np.ndarray, np.ndarray]:
    """Orders placed before the end, numbered by time, their lines merged per item.

    Returns the two tables, every order row's number (-1 = not observed) and every order row's amount in cents.
    """
    line_cents = orders.line_quantity * catalog.price_cents[orders.line_item]
    order_cents = np.bincount(orders.line_order, weights=line_cents, minlength=len(orders.user)).astype(np.int64)
    observed = np.flatnonzero(orders.second < config.days * SECONDS_PER_DAY)
    observed = observed[np.lexsort((orders.user[observed], orders.second[observed]))]
    number = np.full(len(orders.user), -1, dtype=np.int64)
    number[observed] = next_id + np.arange(len(observed))
    order_ids = sequential_ids("o", number[observed], ID_WIDTH["o"])
    orders_table = pa.Table.from_arrays(
        [
            order_ids,
            pick(user_ids, orders.user[observed]),
            timestamps(config.start, orders.second[observed]),
            money(order_cents[observed]),
            pick(partners.ids, orders.partner[observed], orders.partner[observed] < 0),
        ],
        schema=RAW_SCHEMAS["orders"],
    )
    # lines of observed orders; the same item twice in one order becomes one line with the summed quantity
    line_number = number[orders.line_order]
    keep = line_number >= 0
    key = line_number[keep] * catalog.n_items + orders.line_item[keep]
    unique_key, inverse = np.unique(key, return_inverse=True)
    quantity = np.bincount(inverse, weights=orders.line_quantity[keep]).astype(np.int64)
    line_item = unique_key % catalog.n_items
    items_table = pa.Table.from_arrays(
        [
            sequential_ids("o", unique_key // catalog.n_items, ID_WIDTH["o"]),
            pick(catalog.item_ids, line_item),
            pa.array(quantity.astype(np.int32)),
            money(catalog.price_cents[line_item]),
        ],
        schema=RAW_SCHEMAS["order_items"],
    )
    return orders_table, items_table, number, order_cents


def _events_table(
    config: SimulationConfig,
    catalog: Catalog,
    partners: Partners,
    sessions_user: np.ndarray,
    events: Events,
    user_ids: pa.Array,
    order_number: np.ndarray,
    order_cents: np.ndarray,
    counters: IdCounters,
) -> pa.Table:
    n = events.n
    has_order = events.order >= 0
    order_row = np.where(has_order, events.order, 0)
    return pa.Table.from_arrays(
        [
            sequential_ids("e", counters.event + np.arange(n), ID_WIDTH["e"]),
            pick(pa.array(EVENT_TYPES), events.type),
            timestamps(config.start, events.second),
            pick(user_ids, sessions_user[events.session]),
            pick(partners.ids, events.partner, events.partner < 0),
            sequential_ids("s", counters.session + events.session, ID_WIDTH["s"]),
            pick(catalog.item_ids, events.item, events.item < 0),
            pa.array(events.dwell, type=pa.float32(), from_pandas=True),
            pick(catalog.queries, events.query, events.query < 0),
            pick(
                sequential_ids("o", np.maximum(order_number, 0), ID_WIDTH["o"]),
                order_row,
                ~has_order,
            ),
            money(np.where(has_order, order_cents[order_row], 0), ~has_order),
            constant(None, n),
            constant(EVENT_SOURCE, n),
        ],
        schema=RAW_SCHEMAS["events"],
    )


def _preferences_table(config: SimulationConfig, catalog: Catalog, prefs: Preferences, user_ids: pa.Array) -> pa.Table:
    return pa.Table.from_arrays(
        [
            pick(user_ids, prefs.user),
            pick(pa.array(PREFERENCE_KINDS), prefs.kind),
            pick(catalog.item_ids, prefs.item, prefs.item < 0),
            pick(CATEGORY_NAMES, prefs.category, prefs.category < 0),
            timestamps(config.start, prefs.second),
        ],
        schema=RAW_SCHEMAS["preferences"],
    )


def chunk_rng(config: SimulationConfig, chunk_index: int) -> np.random.Generator:
    """The random stream of one chunk; its population is the first thing drawn from it, so
    :func:`chunk_population` gives back exactly the users :func:`simulate_chunk` simulated."""
    return np.random.default_rng(np.random.SeedSequence([config.seed, 0x5E55, chunk_index]))


def chunk_population(
    config: SimulationConfig, partners: Partners, chunk_index: int, first_user: int, n_users: int
) -> Population:
    """The hidden traits of one chunk's users, as :func:`simulate_chunk` drew them."""
    return draw_population(config, partners, first_user, n_users, chunk_rng(config, chunk_index))


def simulate_chunk(
    config: SimulationConfig,
    catalog: Catalog,
    partners: Partners,
    chunk_index: int,
    first_user: int,
    n_users: int,
    counters: IdCounters,
) -> ChunkTables:
    """Simulate users ``first_user .. first_user + n_users - 1`` (0-based) and advance ``counters``."""
    rng = chunk_rng(config, chunk_index)
    pop = draw_population(config, partners, first_user, n_users, rng)
    user_ids = sequential_ids("u", first_user + 1 + np.arange(n_users), ID_WIDTH["u"])
    sessions = draw_sessions(config, partners, pop, rng)
    views = draw_views(catalog, pop, sessions, rng)
    orders = draw_orders(config, catalog, partners, pop, sessions, views, rng)
    events = build_events(config, sessions, views, orders, rng)
    prefs = draw_preferences(config, catalog, pop, rng)

    orders_table, items_table, order_number, order_cents = _observed_orders(
        config, catalog, partners, orders, user_ids, counters.order
    )
    events_table = _events_table(
        config, catalog, partners, sessions.user, events, user_ids, order_number, order_cents, counters
    )
    counters.session += sessions.n
    counters.order += orders_table.num_rows
    counters.event += events.n
    return ChunkTables(
        users=_users_table(config, partners, pop, user_ids),
        orders=orders_table,
        order_items=items_table,
        events=events_table,
        preferences=_preferences_table(config, catalog, prefs, user_ids),
        future_spend=_future_spend_table(config, pop, user_ids, orders, order_cents),
        user_traits=_traits_table(config, catalog, pop, user_ids),
    )

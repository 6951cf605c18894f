"""Browsing sessions, orders and the event stream of one chunk of users, all as flat numpy arrays.

Observed window: sessions arrive as a Poisson process (rate = purchase rate / conversion) while the user is
alive; each session views items, converting ones add to cart and order. The hidden future uses the same
process thinned to its converting part (orders at the purchase rate), which has the same distribution and
saves generating events nobody will see. Times are whole seconds since day 0; a row is observed iff it
happened before the end of the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltvfeed.simulator.catalog import Catalog
from ltvfeed.simulator.columns import SECONDS_PER_DAY
from ltvfeed.simulator.config import SimulationConfig
from ltvfeed.simulator.population import Partners, Population, sample_categories
from ltvfeed.simulator.vocab import CATEGORIES

OWN_PARTNER_SHARE = 0.7  # referred sessions of partner-acquired users that come through that same partner
REBUY_ROUNDS = 4  # a re-bought line can itself be re-bought, this many times in a row
REBUY_JITTER = 0.25  # lognormal sigma of one re-buy's delay around the item's cycle
REBUY_TRIES = 4  # random lines of the later order tried for one of the same category
REBUY_ORDERS = 6  # later orders searched for a line of the same category


@dataclass(frozen=True)
class Sessions:
    user: np.ndarray
    start: np.ndarray  # seconds (float) since day 0
    partner: np.ndarray  # -1 = the shop's own site
    converts: np.ndarray
    search: np.ndarray
    extra_views: np.ndarray  # browsing views besides the items bought
    lines: np.ndarray  # items bought (0 when not converting)

    @property
    def n(self) -> int:
        return len(self.user)


@dataclass(frozen=True)
class Orders:
    """Orders (one row each) and their lines; ``line_order`` indexes the order rows."""

    user: np.ndarray
    second: np.ndarray  # int64 seconds since day 0
    partner: np.ndarray
    session: np.ndarray  # chunk-local session, -1 for hidden-future orders
    line_order: np.ndarray
    line_item: np.ndarray
    line_quantity: np.ndarray


# Share of sessions starting in each UTC hour: quiet nights, a lunch bump, evening peak.
HOURLY_SHARE = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 5, 4.5, 4.5, 4.5, 5, 6, 7.5, 8, 7, 5, 2.5]
)


def _daily_rhythm(day: np.ndarray, low: np.ndarray, high: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move each time to a time of day drawn from ``HOURLY_SHARE``, on the same day, where it stays in range."""
    cdf = np.cumsum(HOURLY_SHARE) / HOURLY_SHARE.sum()
    hour = np.minimum(np.searchsorted(cdf, rng.random(len(day)), side="right"), 23)
    moved = np.floor(day) + (hour + rng.random(len(day))) / 24.0
    return np.where((moved >= low) & (moved < high), moved, day)


def draw_sessions(config: SimulationConfig, partners: Partners, pop: Population, rng: np.random.Generator) -> Sessions:
    """Sessions inside the observed window while each user is signed up and alive."""
    p = config.params
    begin = np.maximum(pop.signup_day, 0.0)
    span = np.clip(np.minimum(pop.churn_day, config.days) - begin, 0.0, None)
    count = rng.poisson(pop.session_rate * span)
    user = np.repeat(np.arange(pop.n), count)
    n = len(user)
    start = _daily_rhythm(begin[user] + rng.random(n) * span[user], begin[user], begin[user] + span[user], rng)
    start = start * SECONDS_PER_DAY
    converts = rng.random(n) < pop.conversion[user]
    lines = np.where(converts, 1 + rng.poisson(p.lines_mean * pop.basket[user]), 0)
    extra = rng.poisson(pop.views_mean[user])
    extra = np.where(~converts & (extra == 0), 1, extra)  # a session views at least one item
    own = pop.partner[user]
    use_own = (own >= 0) & (rng.random(n) < OWN_PARTNER_SHARE)
    other = rng.choice(config.n_partners, size=n, p=partners.popularity)
    referred = rng.random(n) < pop.partner_share[user]
    partner = np.where(referred, np.where(use_own, own, other), -1)
    return Sessions(
        user=user,
        start=start,
        partner=partner,
        converts=converts,
        search=rng.random(n) < p.search_share,
        extra_views=extra,
        lines=lines,
    )


def line_quantities(
    catalog: Catalog, pop: Population, user: np.ndarray, item: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Units per line: consumables come in multiples, big-basket users buy more."""
    return 1 + rng.poisson(catalog.extra_quantity[item] * pop.basket[user])


@dataclass(frozen=True)
class Views:
    session: np.ndarray
    position: np.ndarray  # 0-based position within the session
    item: np.ndarray
    bought: np.ndarray
    dwell: np.ndarray  # seconds
    second: np.ndarray  # float seconds since day 0
    session_first: np.ndarray  # per session: index of its first view
    session_end: np.ndarray  # per session: when its last view ends


def draw_views(catalog: Catalog, pop: Population, s: Sessions, rng: np.random.Generator) -> Views:
    """Product views with dwell times; the items bought are viewed last, each followed by add-to-cart."""
    per_session = s.extra_views + s.lines
    session = np.repeat(np.arange(s.n), per_session)
    first = np.cumsum(per_session) - per_session
    position = np.arange(len(session)) - first[session]
    bought = position >= s.extra_views[session]
    user = s.user[session]
    category = sample_categories(pop.taste, user, rng)
    item = catalog.sample_items(category, pop.price_bin[user], rng)
    match = pop.taste[user, category] * len(CATEGORIES)  # 1 = as interesting as an average category
    dwell = (
        20.0
        * pop.dwell_scale[user]
        * rng.lognormal(0.0, 0.6, size=len(session))
        * (0.5 + np.sqrt(np.minimum(match, 6.0)))
        * np.where(bought, 1.4, 1.0)
    )
    dwell = np.round(dwell, 1)
    gap = 3.0 + rng.exponential(12.0, size=len(session))
    step = gap + dwell + np.where(bought, 2.0, 0.0)
    cum = np.cumsum(step)
    before = cum - step  # time used by earlier views of all sessions
    session_base = np.zeros(s.n)
    has_views = per_session > 0
    session_base[has_views] = before[first[has_views]]
    lead = 2.0 + np.where(s.search, 5.0 + rng.exponential(10.0, size=s.n), 0.0)
    second = s.start[session] + lead[session] + (before - session_base[session]) + gap
    session_total = np.bincount(session, weights=step, minlength=s.n)
    return Views(
        session=session,
        position=position,
        item=item,
        bought=bought,
        dwell=dwell,
        second=second,
        session_first=first,
        session_end=s.start + lead + session_total,
    )


def rebuy(
    config: SimulationConfig,
    catalog: Catalog,
    user: np.ndarray,
    second: np.ndarray,
    line_order: np.ndarray,
    line_item: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Order lines with re-buys: each line of a re-buyable item is, with ``rebuy_share``, bought again in the
    user's first order at least one (jittered) cycle later that holds a line of the same category (of the next
    :data:`REBUY_ORDERS`; none: no re-buy), replacing that line; repeated for the re-bought lines
    (:data:`REBUY_ROUNDS`). Vectorised over all lines of the chunk."""
    share = config.params.rebuy_share
    items = line_item.copy()
    if share <= 0 or not len(items):
        return items
    n_orders = len(user)
    big = np.int64(int(second.max(initial=0)) + 1)
    key = user.astype(np.int64) * big + second
    by_time = np.argsort(key, kind="stable")
    sorted_key, sorted_user = key[by_time], user[by_time]
    by_order = np.argsort(line_order, kind="stable")  # the lines of each order, contiguous
    first = np.searchsorted(line_order[by_order], np.arange(n_orders))
    count = np.bincount(line_order, minlength=n_orders)
    source = np.arange(len(items))
    for _ in range(REBUY_ROUNDS):
        cycle = catalog.cycle_days[items[source]]
        keep = np.isfinite(cycle) & (rng.random(len(source)) < share)
        source, cycle = source[keep], cycle[keep]
        if not len(source):
            break
        delay = cycle * rng.lognormal(0.0, REBUY_JITTER, size=len(source)) * SECONDS_PER_DAY
        who = user[line_order[source]]
        due = second[line_order[source]] + np.ceil(delay).astype(np.int64)
        at = np.searchsorted(sorted_key, who.astype(np.int64) * big + np.minimum(due, big - 1))
        bought = items[source]
        open_ = due < big
        done = []
        for _ in range(REBUY_ORDERS):  # the first of the user's next orders holding a line of the category
            look = open_ & (at < n_orders)
            look[look] = sorted_user[at[look]] == who[look]
            if not look.any():
                break
            rows = np.flatnonzero(look)
            target = by_time[at[rows]]
            # replace a line of the same category (what the user would have bought instead: same expected
            # value, so spend keeps its distribution): the first of REBUY_TRIES random lines that matches
            tries = (rng.random((len(rows), REBUY_TRIES)) * count[target][:, None]).astype(np.int64)
            lines = by_order[first[target][:, None] + tries]
            match = catalog.category[items[lines]] == catalog.category[bought[rows]][:, None]
            hit = match.any(axis=1)
            chosen = lines[hit, match[hit].argmax(axis=1)]
            items[chosen] = bought[rows[hit]]
            done.append(chosen)
            open_[rows[hit]] = False
            at = at + 1
        source = np.concatenate(done) if done else np.zeros(0, dtype=np.int64)
    return items


def draw_orders(
    config: SimulationConfig,
    catalog: Catalog,
    partners: Partners,
    pop: Population,
    s: Sessions,
    v: Views,
    rng: np.random.Generator,
) -> Orders:
    """Orders of converting sessions (observed or spilling past the end) plus the hidden future's orders."""
    p = config.params
    converting = np.flatnonzero(s.converts)
    session_order = np.full(s.n, -1)
    session_order[converting] = np.arange(len(converting))
    checkout = v.session_end[converting] + 30.0 + rng.exponential(120.0, size=len(converting))
    bought = np.flatnonzero(v.bought)
    past_line_order = session_order[v.session[bought]]
    past_line_item = v.item[bought]

    # hidden future: orders at the purchase rate between the window's end and churn (or the last horizon)
    span = np.clip(np.minimum(pop.churn_day, config.total_days) - config.days, 0.0, None)
    count = rng.poisson(pop.purchase_rate * span)
    f_user = np.repeat(np.arange(pop.n), count)
    f_second = (config.days + rng.random(len(f_user)) * span[f_user]) * SECONDS_PER_DAY
    f_lines = 1 + rng.poisson(p.lines_mean * pop.basket[f_user])
    f_line_order = np.repeat(np.arange(len(f_user)), f_lines) + len(converting)
    f_line_user = f_user[f_line_order - len(converting)]
    f_category = sample_categories(pop.taste, f_line_user, rng)
    f_item = catalog.sample_items(f_category, pop.price_bin[f_line_user], rng)
    own = pop.partner[f_user]
    use_own = (own >= 0) & (rng.random(len(f_user)) < OWN_PARTNER_SHARE)
    other = rng.choice(config.n_partners, size=len(f_user), p=partners.popularity)
    referred = rng.random(len(f_user)) < pop.partner_share[f_user]
    f_partner = np.where(referred, np.where(use_own, own, other), -1)

    user = np.concatenate([s.user[converting], f_user])
    line_order = np.concatenate([past_line_order, f_line_order])
    line_item = np.concatenate([past_line_item, f_item])
    second = np.floor(np.concatenate([checkout, f_second])).astype(np.int64)
    line_item = rebuy(config, catalog, user, second, line_order, line_item, rng)
    return Orders(
        user=user,
        second=second,
        partner=np.concatenate([s.partner[converting], f_partner]),
        session=np.concatenate([converting, np.full(len(f_user), -1)]),
        line_order=line_order,
        line_item=line_item,
        line_quantity=line_quantities(catalog, pop, user[line_order], line_item, rng),
    )

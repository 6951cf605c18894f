"""The interaction stream a chunk's sessions leave behind: clicks on partner sites, searches, product views
with dwell time, add-to-cart and attributed referral purchases. Only what happened before the window's end."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltvfeed.simulator.activity import Orders, Sessions, Views
from ltvfeed.simulator.catalog import QUERIES_PER_ITEM
from ltvfeed.simulator.config import SimulationConfig

EVENT_TYPES = ("click", "view", "add_to_cart", "referral_purchase", "search")
CLICK, VIEW, ADD_TO_CART, REFERRAL_PURCHASE, SEARCH = range(len(EVENT_TYPES))


@dataclass(frozen=True)
class Events:
    """Observed events sorted by time; ``order`` indexes the chunk's order rows (-1: none)."""

    type: np.ndarray
    second: np.ndarray
    session: np.ndarray
    partner: np.ndarray  # -1 = the shop's own site
    item: np.ndarray  # -1 = none
    dwell: np.ndarray  # NaN = none
    query: np.ndarray  # index into the catalogue's queries, -1 = none
    order: np.ndarray

    @property
    def n(self) -> int:
        return len(self.type)


def _part(
    kind: int,
    session: np.ndarray,
    second: np.ndarray,
    item: np.ndarray | None = None,
    dwell: np.ndarray | None = None,
    query: np.ndarray | None = None,
    order: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    n = len(session)
    return {
        "type": np.full(n, kind, dtype=np.int8),
        "second": np.floor(second).astype(np.int64),
        "session": session,
        "item": np.full(n, -1) if item is None else item,
        "dwell": np.full(n, np.nan, dtype=np.float32) if dwell is None else dwell.astype(np.float32),
        "query": np.full(n, -1) if query is None else query,
        "order": np.full(n, -1) if order is None else order,
    }


def build_events(config: SimulationConfig, s: Sessions, v: Views, orders: Orders, rng: np.random.Generator) -> Events:
    first_item = v.item[v.session_first] if len(v.item) else np.zeros(s.n, dtype=np.int64)
    referred = np.flatnonzero(s.partner >= 0)
    searching = np.flatnonzero(s.search)
    query = first_item[searching] * QUERIES_PER_ITEM + rng.integers(0, QUERIES_PER_ITEM, size=len(searching))

    # add-to-cart: every item bought, plus one abandoned cart in some sessions that do not convert
    last_view = v.session_first + s.extra_views + s.lines - 1
    abandons = ~s.converts & (rng.random(s.n) < config.params.abandoned_cart_share)
    carted = np.concatenate([np.flatnonzero(v.bought), last_view[abandons]])

    purchase = np.flatnonzero((orders.session >= 0) & (orders.partner >= 0))
    parts = [
        _part(CLICK, referred, s.start[referred], item=first_item[referred]),
        _part(SEARCH, searching, s.start[searching] + 1.0, query=query),
        _part(VIEW, v.session, v.second, item=v.item, dwell=v.dwell),
        _part(
            ADD_TO_CART,
            v.session[carted],
            v.second[carted] + v.dwell[carted] + 1.0,
            item=v.item[carted],
        ),
        _part(REFERRAL_PURCHASE, orders.session[purchase], orders.second[purchase], order=purchase),
    ]
    cols = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    observed = cols["second"] < config.days * 86_400
    cols = {key: value[observed] for key, value in cols.items()}
    # within a session every event is at least a second after the previous one, so (second, session) orders all
    order = np.argsort(cols["second"] * (s.n + 1) + cols["session"], kind="stable")
    cols = {key: value[order] for key, value in cols.items()}
    return Events(
        type=cols["type"],
        second=cols["second"],
        session=cols["session"],
        partner=s.partner[cols["session"]],
        item=cols["item"],
        dwell=cols["dwell"],
        query=cols["query"],
        order=cols["order"],
    )

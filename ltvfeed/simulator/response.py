"""How simulated users respond to the feeds they are served: the closed loop's behaviour model.

Pure numpy, no I/O. It sees only what a real shopper would: their own hidden traits (:class:`UserTraits`, from
the simulator's population), what the catalogue shows about each item (:class:`ItemAttributes`: category, price,
re-buy cycle) and the list served to them, plus their own memory of what they were shown and bought
(:class:`ResponseMemory`). Nothing of the ranking models (scores, parameters, which arm) is an input, so a feed
can only win by showing items these users want.

One visit, per served position k (1-based):
- the user looks at position k with probability ``k ** -position_decay`` (position bias);
- clicks with ``base_click × taste match × fatigue × history``: taste match is the user's taste for the
  item's category relative to an average category; fatigue divides by ``1 + fatigue_rate × times the user was
  shown this item before``; history boosts a consumable whose re-buy cycle has passed since the user last bought
  it (repeat purchases) and damps an item just bought or a durable already owned;
- adds to cart with ``cart_rate × conversion × price factor`` (``(price / category median) ** -(elasticity ×
  price sensitivity)``, so price-sensitive users shy away from dear items), ``× due_boost`` when a re-buy is due;
- buys what is in the cart with ``buy_rate × sqrt(price factor)``; units per line like the simulator's orders.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ltvfeed.simulator.catalog import Catalog
from ltvfeed.simulator.population import Population

MEAN_CONVERSION = 2.0 / 11.0  # mean of the population's Beta(2, 9) session conversion


@dataclass(frozen=True)
class ResponseParams:
    """Knobs of the behaviour model; defaults give a few clicks per hundred items shown."""

    position_decay: float = 0.8
    base_click: float = 0.06
    max_click: float = 0.9
    fatigue_rate: float = 0.4
    cart_rate: float = 0.35
    buy_rate: float = 0.6
    price_elasticity: float = 2.0  # at price sensitivity 1 (sensitivity is in [0, 1])
    due_boost: float = 3.0  # a consumable whose cycle has passed since the user's last purchase of it
    recent_damping: float = 0.3  # bought, not due again yet (or a durable: owned)
    due_share: float = 0.8  # a re-buy is due after this share of the item's cycle
    visit_scale: float = 1.0  # multiplies every user's visits per day


@dataclass(frozen=True)
class UserTraits:
    """Hidden traits, one row per user (row i = user ``user_ids[i]``)."""

    user_ids: np.ndarray  # str
    taste: np.ndarray  # (users, categories), rows sum to 1
    price_sensitivity: np.ndarray  # 0..1
    visit_rate: np.ndarray  # visits per alive day
    conversion: np.ndarray  # share of sessions that end in an order
    basket: np.ndarray  # units multiplier
    active_from: np.ndarray  # simulation day of signup
    active_until: np.ndarray  # simulation day of churn

    @property
    def n(self) -> int:
        return len(self.user_ids)

    @classmethod
    def from_populations(cls, populations: Iterable[Population]) -> UserTraits:
        """The simulator's chunks of users (:func:`ltvfeed.simulator.shop.hidden_populations`) as one table."""
        pops = list(populations)
        ids = [f"u{p.first_index + 1 + i:07d}" for p in pops for i in range(p.n)]  # chunk.ID_WIDTH["u"]

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in pops])

        return cls(
            user_ids=np.array(ids),
            taste=cat("taste"),
            price_sensitivity=cat("price_sensitivity"),
            visit_rate=cat("session_rate"),
            conversion=cat("conversion"),
            basket=cat("basket"),
            active_from=cat("signup_day"),
            active_until=cat("churn_day"),
        )


@dataclass(frozen=True)
class ItemAttributes:
    """What the catalogue shows about each item (row j = item ``item_ids[j]``)."""

    item_ids: np.ndarray  # str
    category: np.ndarray  # int
    price: np.ndarray  # currency units
    reference_price: np.ndarray  # median price of the item's category
    cycle_days: np.ndarray  # re-buy cycle of consumables; inf for durables
    extra_quantity: np.ndarray  # mean units beyond the first at basket 1

    @property
    def n(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> ItemAttributes:
        price = catalog.price_cents / 100.0
        reference = np.zeros_like(price)
        for c in np.unique(catalog.category):
            members = catalog.category == c
            reference[members] = np.median(price[members])
        return cls(
            item_ids=np.array(catalog.item_ids.to_pylist()),
            category=catalog.category,
            price=price,
            reference_price=reference,
            cycle_days=catalog.cycle_days,
            extra_quantity=catalog.extra_quantity,
        )


class ResponseMemory:
    """Each user's own memory of the shop: how often each item was shown to them, when they last bought it."""

    def __init__(self, n_users: int, n_items: int) -> None:
        self.shown = np.zeros((n_users, n_items), dtype=np.int32)
        self.last_bought = np.full((n_users, n_items), np.nan)

    def record_purchases(self, users: np.ndarray, items: np.ndarray, days: np.ndarray) -> None:
        """Purchases (also those before the experiment): the latest day per (user, item) is kept."""
        current = self.last_bought[users, items]
        self.last_bought[users, items] = np.fmax(current, days)

    def record(self, served: np.ndarray, users: np.ndarray, responses: Responses, day: float) -> None:
        """After a day: every served item counts as shown once more; purchases remembered."""
        rows = np.repeat(users, served.shape[1])
        flat = served.ravel()
        ok = flat >= 0
        np.add.at(self.shown, (rows[ok], flat[ok]), 1)
        bought = responses.bought
        self.record_purchases(users[responses.visit[bought]], responses.item[bought], np.full(bought.sum(), day))


@dataclass(frozen=True)
class Responses:
    """One row per (visit, served position): what the user did with that item."""

    visit: np.ndarray  # row of the day's visits
    position: np.ndarray  # 1-based
    item: np.ndarray
    clicked: np.ndarray
    carted: np.ndarray
    bought: np.ndarray
    quantity: np.ndarray  # units bought (0 when not bought)


def visitors(traits: UserTraits, day: float, rng: np.random.Generator, params: ResponseParams) -> np.ndarray:
    """Rows of the users who visit on ``day`` (signed up, not churned; Poisson visits, at most one counted)."""
    alive = (traits.active_from <= day) & (day < traits.active_until)
    p = 1.0 - np.exp(-traits.visit_rate * params.visit_scale)
    return np.flatnonzero(alive & (rng.random(traits.n) < p))


def _history_factor(
    items: ItemAttributes, last: np.ndarray, item: np.ndarray, day: float, params: ResponseParams
) -> np.ndarray:
    """1 for items never bought; ``due_boost`` for consumables past their cycle; ``recent_damping`` otherwise."""
    since = day - last
    due = np.isfinite(items.cycle_days[item]) & (since >= params.due_share * items.cycle_days[item])
    return np.where(np.isnan(last), 1.0, np.where(due, params.due_boost, params.recent_damping))


def respond(
    traits: UserTraits,
    items: ItemAttributes,
    memory: ResponseMemory,
    users: np.ndarray,
    served: np.ndarray,
    day: float,
    rng: np.random.Generator,
    params: ResponseParams | None = None,
) -> Responses:
    """Draw what each visiting user (row ``users[v]`` of ``traits``) does with the feed ``served[v]`` (item rows
    in served order; -1 pads a shorter feed) on ``day``. ``memory`` is read, not changed."""
    params = params or ResponseParams()
    n_visits, n_pos = served.shape
    visit = np.repeat(np.arange(n_visits), n_pos)
    position = np.tile(np.arange(1, n_pos + 1), n_visits)
    item = served.ravel()
    keep = item >= 0
    visit, position, item = visit[keep], position[keep], item[keep]
    user = users[visit]

    match = traits.taste[user, items.category[item]] * traits.taste.shape[1]
    fatigue = 1.0 / (1.0 + params.fatigue_rate * memory.shown[user, item])
    history = _history_factor(items, memory.last_bought[user, item], item, day, params)
    attraction = np.minimum(params.base_click * match * fatigue * history, params.max_click)
    clicked = rng.random(len(item)) < position.astype(float) ** -params.position_decay * attraction

    relative_price = items.price[item] / items.reference_price[item]
    price_factor = relative_price ** -(params.price_elasticity * traits.price_sensitivity[user])
    due = np.where(history > 1.0, params.due_boost, 1.0)
    p_cart = params.cart_rate * traits.conversion[user] / MEAN_CONVERSION * price_factor * due
    carted = clicked & (rng.random(len(item)) < np.clip(p_cart, 0.0, 0.95))
    p_buy = np.clip(params.buy_rate * np.sqrt(price_factor), 0.0, 0.95)
    bought = carted & (rng.random(len(item)) < p_buy)
    units = 1 + rng.poisson(items.extra_quantity[item] * traits.basket[user])
    return Responses(
        visit=visit,
        position=position,
        item=item,
        clicked=clicked,
        carted=carted,
        bought=bought,
        quantity=np.where(bought, units, 0),
    )

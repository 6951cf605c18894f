"""The closed loop's response model: each behavioural effect on its own (position bias, taste, price
sensitivity, fatigue, repeat purchases), determinism, and that it reads only the simulator's hidden traits."""

from __future__ import annotations

import ast
import inspect
from datetime import date

import numpy as np
import pytest

from ltvfeed.simulator import SimulationConfig, simulate_shop
from ltvfeed.simulator import response as response_module
from ltvfeed.simulator.catalog import build_catalog
from ltvfeed.simulator.response import (
    ItemAttributes,
    ResponseMemory,
    ResponseParams,
    UserTraits,
    respond,
    visitors,
)
from ltvfeed.simulator.shop import hidden_populations

N_CAT = 4
VISITS = 20_000


def _traits(n: int = 1, *, favourite: int = 0, sensitivity: float = 0.5, taste: float = 0.7) -> UserTraits:
    rest = (1 - taste) / (N_CAT - 1)
    row = np.full(N_CAT, rest)
    row[favourite] = taste
    return UserTraits(
        user_ids=np.array([f"u{i}" for i in range(n)]),
        taste=np.tile(row, (n, 1)),
        price_sensitivity=np.full(n, sensitivity),
        visit_rate=np.full(n, 0.5),
        conversion=np.full(n, 0.2),
        basket=np.ones(n),
        active_from=np.zeros(n),
        active_until=np.full(n, 100.0),
    )


def _items(categories, prices, cycles=None) -> ItemAttributes:
    k = len(categories)
    return ItemAttributes(
        item_ids=np.array([f"i{j}" for j in range(k)]),
        category=np.asarray(categories),
        price=np.asarray(prices, dtype=float),
        reference_price=np.full(k, 20.0),
        cycle_days=np.full(k, np.inf) if cycles is None else np.asarray(cycles, dtype=float),
        extra_quantity=np.zeros(k),
    )


def _rates(traits, items, served_row, *, memory=None, day=10.0, seed=0, params=None):
    """Per position: click, cart and purchase shares over VISITS visits of user 0 to the same feed."""
    served = np.tile(np.asarray(served_row), (VISITS, 1))
    memory = memory or ResponseMemory(traits.n, items.n)
    r = respond(traits, items, memory, np.zeros(VISITS, dtype=int), served, day, np.random.default_rng(seed), params)
    n = served.shape[1]
    shape = (VISITS, n)
    return (
        r.clicked.reshape(shape).mean(axis=0),
        r.carted.reshape(shape).sum(axis=0),
        r.bought.reshape(shape).sum(axis=0),
    )


def test_first_position_is_clicked_more_than_the_tenth() -> None:
    items = _items([0] * 10, [20.0] * 10)  # ten identical items: only the position differs
    clicks, _, _ = _rates(_traits(), items, np.arange(10))
    assert clicks[0] > 2 * clicks[9]
    assert np.all(np.diff(clicks[[0, 2, 5, 9]]) < 0)


def test_favourite_category_is_clicked_more() -> None:
    items = _items([0, 1], [20.0, 20.0])
    fav_first, _, _ = _rates(_traits(favourite=0), items, [0, 1])
    other_first, _, _ = _rates(_traits(favourite=1), items, [0, 1])
    assert fav_first[0] > 3 * other_first[0]  # the same item in the same slot, liked vs not
    assert other_first[1] > 3 * fav_first[1]


def test_price_sensitive_users_buy_dear_items_less() -> None:
    items = _items([0, 0], [10.0, 40.0])
    params = ResponseParams(base_click=0.5)
    _, _, bought_sensitive = _rates(_traits(sensitivity=1.0), items, [0, 1], params=params)
    _, _, bought_relaxed = _rates(_traits(sensitivity=0.0), items, [0, 1], params=params)
    sensitive_ratio = bought_sensitive[1] / bought_sensitive[0]
    relaxed_ratio = bought_relaxed[1] / bought_relaxed[0]
    assert sensitive_ratio < 0.3  # the dear item, a lower slot aside, sells far less to the sensitive user
    assert relaxed_ratio > 2 * sensitive_ratio


def test_an_item_shown_many_times_loses_clicks() -> None:
    traits, items = _traits(), _items([0], [20.0])
    tired = ResponseMemory(1, 1)
    tired.shown[0, 0] = 12
    fresh_clicks, _, _ = _rates(traits, items, [0])
    tired_clicks, _, _ = _rates(traits, items, [0], memory=tired)
    assert tired_clicks[0] < fresh_clicks[0] / 3


def test_memory_counts_every_served_item_and_purchases() -> None:
    traits, items = _traits(2), _items([0, 1, 2], [20.0] * 3)
    memory = ResponseMemory(2, 3)
    served = np.array([[0, 2, -1], [1, 0, 2]])
    users = np.array([1, 0])
    r = respond(traits, items, memory, users, served, 5.0, np.random.default_rng(1), ResponseParams(base_click=1.0))
    memory.record(served, users, r, 5.0)
    assert memory.shown.tolist() == [[1, 1, 1], [1, 0, 1]]
    bought = {(int(users[v]), int(i)) for v, i in zip(r.visit[r.bought], r.item[r.bought], strict=True)}
    assert {(u, i) for u, i in zip(*np.nonzero(~np.isnan(memory.last_bought)), strict=True)} == bought
    assert np.all(memory.last_bought[~np.isnan(memory.last_bought)] == 5.0)


def test_consumables_due_again_are_bought_again_durables_owned_are_not() -> None:
    items = _items([0, 0], [20.0, 20.0], cycles=[10.0, np.inf])
    due, recent, owned = ResponseMemory(1, 2), ResponseMemory(1, 2), ResponseMemory(1, 2)
    due.last_bought[0, 0] = 0.0  # cycle of 10 days passed by day 12
    recent.last_bought[0, 0] = 11.0  # bought yesterday
    owned.last_bought[0, 1] = 0.0  # a durable bought before
    _, _, never = _rates(_traits(), items, [0, 1], day=12.0)
    _, _, again = _rates(_traits(), items, [0, 1], memory=due, day=12.0)
    _, _, just = _rates(_traits(), items, [0, 1], memory=recent, day=12.0)
    _, _, kept = _rates(_traits(), items, [0, 1], memory=owned, day=12.0)
    assert again[0] > 2 * never[0] > 2 * just[0]
    assert kept[1] < never[1] / 2


def test_same_seed_same_responses_other_seed_other_responses() -> None:
    items = _items([0, 1, 2, 3] * 3, np.linspace(5, 50, 12))
    traits = _traits(50)
    served = np.array([np.random.default_rng(u).permutation(12)[:10] for u in range(50)])

    def run(seed: int):
        return respond(traits, items, ResponseMemory(50, 12), np.arange(50), served, 3.0, np.random.default_rng(seed))

    a, b, c = run(7), run(7), run(8)
    for field in ("clicked", "carted", "bought", "quantity"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.clicked, c.clicked)


def test_only_alive_users_visit() -> None:
    traits = _traits(1000)
    traits = UserTraits(**{**traits.__dict__, "active_until": np.where(np.arange(1000) < 500, 5.0, 100.0)})
    rows = visitors(traits, 10.0, np.random.default_rng(0), ResponseParams())
    assert len(rows) > 100 and rows.min() >= 500  # churned users (before day 10) never come back
    rate = len(rows) / 500
    assert rate == pytest.approx(1 - np.exp(-0.5), abs=0.07)


def test_traits_are_the_simulated_users_hidden_traits() -> None:
    config = SimulationConfig(n_users=250, n_items=40, days=30, seed=3, end_date=date(2025, 1, 1), chunk_users=100)
    traits = UserTraits.from_populations(hidden_populations(config))
    truth = simulate_shop(config).user_traits.set_index("user_id")
    assert list(traits.user_ids) == list(truth.index)
    np.testing.assert_allclose(traits.price_sensitivity, truth["price_sensitivity"].to_numpy())
    np.testing.assert_allclose(traits.active_until, truth["churn_day"].to_numpy())
    items = ItemAttributes.from_catalog(build_catalog(config))
    assert items.n == 40 and np.all(items.reference_price > 0)
    assert (np.isfinite(items.cycle_days) == build_catalog(config).table["is_repeat_purchase"].to_numpy()).all()


def test_the_model_cannot_read_ranking_models() -> None:
    """Its inputs are traits, catalogue attributes, the served list, the user's memory, the day and randomness;
    and the module imports nothing from serving, training or the experiments."""
    params = list(inspect.signature(respond).parameters)
    assert params == ["traits", "items", "memory", "users", "served", "day", "rng", "params"]
    tree = ast.parse(inspect.getsource(response_module))
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert all(m in {"__future__", "collections.abc", "dataclasses", "numpy"} or m.startswith("ltvfeed.simulator")
               for m in imported), imported  # fmt: skip

"""The ``co_bought`` candidates (issue 14): the item-to-item table learned from order lines
(:mod:`ltvfeed.warehouse.co_bought`), carried by the catalogue frame into ``Catalogue.co_bought``, and the
candidate source that reads it (:mod:`ltvfeed.serving.candidates`). No servers needed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ltvfeed.errors import UserError
from ltvfeed.frames.inputs import Catalogue, UserBatch
from ltvfeed.serving.candidates import generate_candidates
from ltvfeed.serving.config import CANDIDATE_SOURCES, CandidateConfig
from ltvfeed.serving.generation import GenerationParams
from ltvfeed.warehouse.co_bought import co_bought_table, with_co_bought


def lines(buyers: dict[str, str], times: dict[tuple[str, str], float] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame([(u, i) for u, items in buyers.items() for i in items], columns=["user_id", "item_id"])
    frame["times"] = [(times or {}).get((u, i), 1.0) for u, i in zip(frame["user_id"], frame["item_id"], strict=True)]
    return frame


# u1 has two rows of A (summed); u6 bought one item (no pair); u7 bought P 5x, Q 4x, A 3x, C once: with
# max_buyer_items=3 only P, Q, A count for u7 (else A-C would share 3 buyers and A, C have 5 and 3)
BUYERS = {"u1": "ABCA", "u2": "AB", "u3": "AC", "u4": "BD", "u5": "ABD", "u6": "E", "u7": "ACPQ"}
TIMES = {("u7", "P"): 5.0, ("u7", "Q"): 4.0, ("u7", "A"): 3.0}


def test_table_from_a_tiny_frame_of_purchases_is_the_hand_computed_cosine():
    table = co_bought_table(lines(BUYERS, TIMES), top=20, min_buyers=2, max_buyer_items=3)
    # buyers of: A 5 (u1 u2 u3 u5 u7), B 4 (u1 u2 u4 u5), C 2 (u1 u3), D 2 (u4 u5)
    # of both: A-B 3, A-C 2, B-D 2; A-D, B-C, A-P, A-Q, P-Q 1 each: under min_buyers
    ab, ac, bd = 3 / math.sqrt(5 * 4), 2 / math.sqrt(5 * 2), 2 / math.sqrt(4 * 2)
    assert table.loc["A", "co_bought"] == ("B", "C") and table.loc["B", "co_bought"] == ("D", "A")
    assert table.loc["C", "co_bought"] == ("A",) and table.loc["D", "co_bought"] == ("B",)
    assert sorted(table.index) == ["A", "B", "C", "D"]  # E (alone), P, Q (one buyer) have no neighbour
    np.testing.assert_allclose(table.loc["A", "co_bought_score"], [ab, ac])
    np.testing.assert_allclose(table.loc["B", "co_bought_score"], [bd, ab])
    np.testing.assert_allclose(table.loc["C", "co_bought_score"], [ac])
    np.testing.assert_allclose(table.loc["D", "co_bought_score"], [bd])
    top1 = co_bought_table(lines(BUYERS, TIMES), top=1, min_buyers=2, max_buyer_items=3)
    assert top1.loc["A", "co_bought"] == ("B",) and top1.loc["B", "co_bought"] == ("D",)
    # u7's C counted too: A-C shares 3 buyers of A's 5 and C's 3, ahead of A-B
    kept = co_bought_table(lines(BUYERS, TIMES), min_buyers=2, max_buyer_items=4)
    assert kept.loc["A", "co_bought"] == ("C", "B")
    np.testing.assert_allclose(kept.loc["A", "co_bought_score"], [3 / math.sqrt(5 * 3), 3 / math.sqrt(5 * 4)])


def test_cosine_does_not_make_the_best_seller_everyones_neighbour():
    # S is bought by everyone; R shares only two buyers with A, but they are all of R's buyers
    buyers = {f"s{i}": "SX" for i in range(20)} | {"a1": "ARS", "a2": "ARS", "a3": "AS", "a4": "AS"}
    table = co_bought_table(lines(buyers), min_buyers=2)
    assert table.loc["A", "co_bought"][0] == "R"  # count alone would say S (4 buyers against 2)


def world(co_bought: bool = True) -> Catalogue:
    """A bought once (a re-buyable item); B is A's co-bought neighbour but the least popular item of all;
    P0..P9 are the best sellers."""
    ids = ["A", "B", *[f"P{i}" for i in range(10)], "G", "O", "Z", "Y"]
    n = len(ids)
    frame = pd.DataFrame(
        {
            "item_id": ids,
            "category": ["food"] * (n - 4) + ["gift card", "food", "food", "food"],
            "commercial_score": [0.5, 0.0, *np.linspace(1.0, 0.9, 10), 0.1, 0.1, 0.1, 0.05],
            "is_repeat_purchase": [True] + [False] * (n - 1),
            "in_stock": [i != "O" for i in ids],
            "recommendable": [i != "G" for i in ids],
            "popularity": [5.0, 0.0, *range(100, 110), 0.0, 0.0, 0.0, 0.0],
        }
    )
    if co_bought:
        neighbours = {"A": ("G", "O", "B", "unknown"), "Z": ("Y",)}
        frame["co_bought"] = [neighbours.get(i, ()) for i in ids]
        frame["co_bought_score"] = [tuple(0.5 for _ in neighbours.get(i, ())) for i in ids]
    return Catalogue.from_frame(frame)


def test_a_buyer_of_a_gets_its_co_bought_item_even_when_it_sells_least():
    catalogue = world()
    batch = UserBatch.from_lists(catalogue, ["u"], purchased=[["A"]])
    b = catalogue.indices(["B"])[0]
    assert catalogue.popular(11).tolist().count(b) == 0 and catalogue.popularity[b] == 0
    got = generate_candidates(batch, catalogue, CandidateConfig(k=4))
    assert b in got[0]
    without = generate_candidates(batch, catalogue, CandidateConfig(k=4, sources=("history", "popular")))
    assert b not in without[0]
    # the unknown id is dropped, the rest of the row moves up (best first)
    assert catalogue.item_ids[catalogue.co_bought[catalogue.indices(["A"])[0], :3]].tolist() == ["G", "O", "B"]


def test_no_table_means_nothing_from_the_source():
    catalogue = world(co_bought=False)
    assert catalogue.co_bought is None
    batch = UserBatch.from_lists(catalogue, ["u"], purchased=[["A"]])
    only = generate_candidates(batch, catalogue, CandidateConfig(k=4, sources=("co_bought",)))
    assert (only == -1).all()
    assert catalogue.indices(["B"])[0] not in generate_candidates(batch, catalogue, CandidateConfig(k=4))


def test_non_merchandise_out_of_stock_and_bought_items_never_come_from_it():
    catalogue = world()
    batch = UserBatch.from_lists(catalogue, ["u", "v"], purchased=[["A"], ["A", "B"]])
    got = generate_candidates(batch, catalogue, CandidateConfig(k=4, sources=("co_bought",)))
    banned = catalogue.indices(["G", "O"])
    assert not np.isin(got, banned).any()
    assert got[0].tolist() == [catalogue.indices(["B"])[0], -1, -1, -1]
    assert (got[1] == -1).all()  # v bought B already (a one-off item): no candidate left
    one = generate_candidates(batch, catalogue, CandidateConfig(k=1, sources=("co_bought",)))
    assert one[0].tolist() == [catalogue.indices(["B"])[0]]  # the banned ones took no slot before the cut


def test_recent_and_frequent_purchases_weigh_more():
    catalogue = world()
    purchases = pd.DataFrame(
        {
            "user_id": ["u", "u"],
            "item_id": ["A", "Z"],
            "times": [1.0, 1.0],
            "last_days": [200.0, 3.0],
            "first_days": [200.0, 3.0],
        }
    )
    batch = UserBatch.from_frames(catalogue, ["u"], purchases=purchases)
    got = generate_candidates(batch, catalogue, CandidateConfig(k=1, sources=("co_bought",)))
    assert catalogue.item_ids[got[0, 0]] == "Y"  # Z's neighbour: Z was bought 3 days ago, A 200 days ago
    purchases["last_days"] = [3.0, 3.0]
    purchases["times"] = [4.0, 1.0]
    batch = UserBatch.from_frames(catalogue, ["u"], purchases=purchases)
    got = generate_candidates(batch, catalogue, CandidateConfig(k=1, sources=("co_bought",)))
    assert catalogue.item_ids[got[0, 0]] == "B"  # A bought 4 times


def test_vectorised_source_agrees_with_a_per_user_sum_on_random_data():
    rng = np.random.default_rng(3)
    n, width = 60, 5
    table = rng.integers(-1, n, size=(n, width))
    scores = rng.random((n, width))
    in_stock = rng.random(n) > 0.2
    catalogue = Catalogue(
        [f"i{i}" for i in range(n)], ["c"] * n, rng.random(n), in_stock, rng.random(n) > 0.5,
        co_bought=table, co_bought_score=scores,
    )  # fmt: skip
    users = [f"u{u}" for u in range(7)]
    bought = [list(rng.choice(catalogue.item_ids, rng.integers(0, 6), replace=False)) for _ in users]
    batch = UserBatch.from_lists(catalogue, users, purchased=bought)
    k = 8
    got = generate_candidates(batch, catalogue, CandidateConfig(k=k, sources=("co_bought",)))
    for row, mine in enumerate(bought):
        total: dict[int, float] = {}
        for item in catalogue.indices(mine):
            for other, s in zip(table[item], scores[item], strict=True):
                one_off = other in catalogue.indices(mine) and not catalogue.repeat_purchase[other]
                if other >= 0 and in_stock[other] and not one_off:
                    total[other] = total.get(other, 0.0) + s
        best = sorted(total, key=lambda i: (-total[i], i))[:k]
        assert sorted(got[row][got[row] >= 0].tolist()) == sorted(best)


def test_catalogue_frame_columns_carry_the_table_into_the_catalogue():
    items = pd.DataFrame({"item_id": list("ABCDEZ"), "category": "food", "commercial_score": 0.5})
    frame = with_co_bought(items, lines(BUYERS, TIMES))
    assert frame.loc[frame["item_id"] == "E", "co_bought"].item() == ()
    catalogue = Catalogue.from_frame(frame)
    assert catalogue.co_bought.shape[0] == 6
    row = catalogue.co_bought[catalogue.indices(["A"])[0]]
    # the defaults keep all 4 of u7's items: A-C 3 / sqrt(5 * 3) beats A-B 3 / sqrt(5 * 4)
    assert catalogue.item_ids[row[row >= 0]].tolist() == ["C", "B"]
    np.testing.assert_allclose(catalogue.co_bought_score[catalogue.indices(["A"])[0], :2], [3 / 15**0.5, 3 / 20**0.5])
    assert (catalogue.co_bought[catalogue.indices(["E", "Z"])] == -1).all()


def test_co_bought_is_a_default_source_after_history_and_can_be_left_out():
    assert CANDIDATE_SOURCES[:2] == ("history", "co_bought")
    params = GenerationParams(as_of=pd.Timestamp("2026-06-01").date(), candidate_sources=["history", "popular"])
    assert params.feed_config().candidates.sources == ("history", "popular")
    assert GenerationParams.from_dict(params.to_dict()) == params
    with pytest.raises(UserError, match="co_bought"):
        Catalogue(["a", "b"], ["c", "c"], [0.1, 0.2], co_bought=np.array([[5], [0]]))

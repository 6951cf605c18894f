"""The synthetic shop loaded into a real warehouse: the ground truth loads idempotently, and the shop goes in
through the ingest. The shop itself is tested in tests/unit/test_simulator.py."""

from __future__ import annotations

import pytest

from ltvfeed.simulator import write_shop
from ltvfeed.warehouse import RAW_ENTITIES
from tests.unit import test_simulator as unit_half
from tests.unit.test_simulator import END_TS

shop = unit_half.shop  # the unit half's fixtures, requested by name


@pytest.mark.integration
def test_ground_truth_loads_idempotently(shop, tmp_path, warehouse_dsn):
    import psycopg

    from ltvfeed.simulator.load import load_ground_truth

    write_shop(shop, tmp_path)
    for _ in range(2):  # loading again replaces, never duplicates
        counts = load_ground_truth(warehouse_dsn, tmp_path)
    assert counts == {"future_spend": len(shop.future_spend), "user_traits": len(shop.user_traits)}
    with psycopg.connect(warehouse_dsn) as conn:
        rows, spend, until = conn.execute(
            "select count(*), sum(spend), min(observed_until) from ground_truth.future_spend"
        ).fetchone()
        traits = conn.execute("select count(*), sum(purchase_rate) from ground_truth.user_traits").fetchone()
    assert rows == len(shop.future_spend)
    assert float(spend) == pytest.approx(shop.future_spend["spend"].sum(), abs=0.005)
    assert until == END_TS.to_pydatetime()
    assert traits[0] == len(shop.users) and traits[1] == pytest.approx(shop.user_traits["purchase_rate"].sum())


@pytest.mark.integration
def test_load_into_warehouse_through_the_ingest(shop, tmp_path, warehouse_dsn):
    import psycopg

    from ltvfeed.simulator.load import load_into_warehouse

    write_shop(shop, tmp_path)
    load_into_warehouse(warehouse_dsn, tmp_path)
    with psycopg.connect(warehouse_dsn) as conn:
        for kind in RAW_ENTITIES:
            count = conn.execute(f"select count(*) from raw.{kind}").fetchone()[0]
            assert count == len(getattr(shop, kind)), kind
        amount = conn.execute("select sum(amount) from raw.orders").fetchone()[0]
    assert float(amount) == pytest.approx(shop.orders["amount"].sum(), abs=0.005)

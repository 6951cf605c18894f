"""Benchmark of the LTV model against its bars, on a simulated shop and the simulator's ground truth.

    .venv/bin/python bench/bench_ltv.py                    # 170k users, 1,095 days, H = 365 (~125k training rows)
    .venv/bin/python bench/bench_ltv.py --users 30000      # scaled down
    .venv/bin/python bench/bench_ltv.py --seeds 8          # and the network retrained with 8 seeds

The shop is simulated chunk by chunk (memory stays bounded); per chunk, customer features are computed in pandas
the way the ``user_features`` mart defines them (``ltvfeed.training.benchmark.user_features_from_shop``, the
columns the mart and that function share) at two cutoffs:

- training: features at T = end - H, label = revenue in [T, end) (what a training run reads from ltv_labels);
- holdout: features at end, label = ``ground_truth.future_spend`` for H, the simulator's hidden future
  (never observed by anything upstream): every user of the shop at its end, out of time.

The ZILN network and both baselines are fitted with ``ltvfeed.training.ltv_run.fit_models`` (the training run's
own code) on the training rows and evaluated on the holdout. Scoring throughput is measured on the holdout
through the logged pyfunc (what batch scoring calls) and through the bare network; the warehouse read/write of
batch scoring is not part of it. Bars (issue 15): the network beats both baselines on normalized Gini and Spearman;
against the realised future its value-weighted decile error (VWDE) <= 0.10, its total within +-5 %, its decile
MAPE over the deciles holding >= 1 % of the value <= 0.15; with ``--seeds N`` (N >= 2) the spread (max - min) of
the total error over the seeds <= 2 points; training on >= 100k users < 10 min on 2 cores, scoring >= 50k
users/s. The plain decile MAPE is printed as information, beside its noise band.

Beside the decile MAPE it prints the value a perfectly specified model would get on the same population
(``ltvfeed.training.metrics.decile_mape_noise``: futures drawn from the network's own predictive distribution),
and with ``--seeds N`` the spread of the network's figures over training seeds: both say how much of the
decile MAPE is the model and how much is the population.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

END = date(2026, 1, 1)


@dataclass
class Frames:
    train: pd.DataFrame
    train_y: np.ndarray
    holdout: pd.DataFrame
    holdout_y: np.ndarray  # realised: ground_truth.future_spend
    holdout_expected: np.ndarray  # E[spend | hidden traits] (ltvfeed.simulator.truth)


def _pandas(table) -> pd.DataFrame:
    import pyarrow as pa

    mapping = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}
    return table.to_pandas(types_mapper=mapping.get)


def build_frames(
    users: int, days: int, horizon: int, seed: int, progress: bool, train_cutoffs: int = 1, step_days: int = 30
) -> tuple[Frames, dict[str, float]]:
    """Simulate chunk by chunk; keep only the per-user feature rows and labels. ``train_cutoffs`` > 1 adds
    earlier training cutoffs ``step_days`` apart (rows carry their ``cutoff``), as ``ltv_retrain`` does."""
    from tqdm import tqdm

    from ltvfeed.simulator import SimulationConfig
    from ltvfeed.simulator.shop import iter_chunks
    from ltvfeed.simulator.truth import expected_future_spend
    from ltvfeed.training.benchmark import user_features_from_shop

    config = SimulationConfig(n_users=users, n_items=2000, days=days, seed=seed, end_date=END, horizons=(horizon,))
    cutoffs = [pd.Timestamp(END - timedelta(days=horizon + k * step_days), tz="UTC") for k in range(train_cutoffs)]
    end = pd.Timestamp(END, tz="UTC")
    label_span = pd.Timedelta(days=horizon)
    started = time.perf_counter()
    items_table, chunks = iter_chunks(config)
    items = _pandas(items_table)
    train_parts, train_labels, holdout_parts, holdout_labels, holdout_expected = [], [], [], [], []
    total = (users + config.chunk_users - 1) // config.chunk_users
    for chunk in tqdm(chunks, total=total, desc="simulate + features", disable=not progress):
        raw = {kind: _pandas(table) for kind, table in chunk.raw().items()}
        shop = SimpleNamespace(items=items, **raw)
        for cutoff in reversed(cutoffs):  # ascending, as the warehouse returns them
            shop.config = SimpleNamespace(end=cutoff.to_pydatetime())
            train = user_features_from_shop(shop).assign(cutoff=cutoff.date())
            orders = raw["orders"]
            window = orders[(orders["ordered_at"] >= cutoff) & (orders["ordered_at"] < cutoff + label_span)]
            revenue = window.groupby("user_id")["amount"].sum().astype("float64")
            train_parts.append(train)
            train_labels.append(revenue.reindex(train["user_id"]).fillna(0.0).to_numpy())
        shop.config = SimpleNamespace(end=end.to_pydatetime())
        holdout = user_features_from_shop(shop)
        future = _pandas(chunk.future_spend)
        future = future[future["horizon_days"] == horizon].set_index("user_id")["spend"].astype("float64")
        holdout_parts.append(holdout)
        holdout_labels.append(future.reindex(holdout["user_id"]).fillna(0.0).to_numpy())
        traits = _pandas(chunk.user_traits).set_index("user_id").reindex(holdout["user_id"])
        holdout_expected.append(expected_future_spend(traits, days, horizon).to_numpy())
    frames = Frames(
        pd.concat(train_parts, ignore_index=True),
        np.concatenate(train_labels),
        pd.concat(holdout_parts, ignore_index=True),
        np.concatenate(holdout_labels),
        np.concatenate(holdout_expected),
    )
    return frames, {"simulate_and_features_s": time.perf_counter() - started}


def schema_for(frame: pd.DataFrame):
    """The ltv_model service's columns that the pandas features have (the mart has a few more)."""
    from ltvfeed.training.ltv_data import ltv_feature_schema

    schema = ltv_feature_schema()
    return schema.without([c for c in schema.columns if c not in frame.columns])


def run(
    users: int,
    days: int,
    horizon: int,
    seed: int,
    progress: bool,
    seeds: int = 1,
    train_cutoffs: int = 1,
    step_days: int = 30,
    align_history: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    from ltvfeed.training.baselines import BtydBaseline
    from ltvfeed.training.fit import TrainConfig
    from ltvfeed.training.ltv_data import as_model_input
    from ltvfeed.training.ltv_pyfunc import save_ltv_model
    from ltvfeed.training.ltv_run import evaluate_all, fit_models, predict_all

    frames, figures = build_frames(users, days, horizon, seed, progress, train_cutoffs, step_days)
    schema = schema_for(frames.train)
    figures.update(
        train_rows=len(frames.train),
        holdout_rows=len(frames.holdout),
        features=len(schema.columns),
        train_share_with_revenue=float((frames.train_y > 0).mean()),
        holdout_share_with_revenue=float((frames.holdout_y > 0).mean()),
    )

    started = time.perf_counter()
    config = TrainConfig(seed=seed, align_history=align_history)
    models = fit_models(frames.train, frames.train_y, horizon, schema, config)
    figures["fit_all_s"] = time.perf_counter() - started
    started = time.perf_counter()
    BtydBaseline(horizon).fit(frames.train)
    figures["btyd_fit_s"] = time.perf_counter() - started
    figures["ziln_fit_s"] = figures["fit_all_s"] - figures["btyd_fit_s"]  # the naive baseline costs nothing
    report = models.network.report
    figures["ziln_epochs"] = sum(len(m.history) for m in report.members) if report else 0
    figures["ziln_members"] = len(report.members) if report else 0
    figures["calibration"] = f"{report.calibration_source} ({report.calibration_rows:,} rows)" if report else "-"

    predictions = predict_all(models, frames.holdout)
    metrics = evaluate_all(frames.holdout_y, predictions)
    figures["metrics_vs_expected"] = evaluate_all(frames.holdout_expected, predictions)
    figures["expected_over_realised"] = float(frames.holdout_expected.sum() / frames.holdout_y.sum())
    table = value_deciles(frames.holdout_y, predictions["ziln"]["expected_ltv"].to_numpy())
    figures["ziln_decile_table"] = table
    expected_table = value_deciles(frames.holdout_expected, predictions["ziln"]["expected_ltv"].to_numpy())
    figures["ziln_decile_table_vs_expected"] = expected_table
    figures["ziln_decile_mape_value_deciles"] = float(table.loc[table["value_share"] >= 0.01, "ape"].mean())

    inputs = as_model_input(frames.holdout, schema)
    figures["decile_mape_noise"] = own_model_noise(models.network, inputs)
    figures["seed_runs"] = [seed_row(seed, metrics, figures["metrics_vs_expected"])]
    for extra in range(seed + 1, seed + seeds):
        refit = fit_models(frames.train, frames.train_y, horizon, schema, replace(config, seed=extra))
        scored = predict_all(refit, frames.holdout)
        figures["seed_runs"].append(
            seed_row(extra, evaluate_all(frames.holdout_y, scored), evaluate_all(frames.holdout_expected, scored))
        )
    started = time.perf_counter()
    models.network.predict(inputs)
    figures["score_network_users_per_s"] = len(inputs) / (time.perf_counter() - started)
    import mlflow

    with tempfile.TemporaryDirectory(prefix="bench-ltv-") as tmp:
        save_ltv_model(models.network, schema, Path(tmp) / "ltv", frames.train)
        pyfunc = mlflow.pyfunc.load_model(str(Path(tmp) / "ltv"))
        pyfunc.predict(inputs.head(1000))  # warm up
        started = time.perf_counter()
        pyfunc.predict(inputs)
        figures["score_pyfunc_users_per_s"] = len(inputs) / (time.perf_counter() - started)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return metrics, figures


def own_model_noise(network, inputs: pd.DataFrame, draws: int = 200):
    """The decile MAPE the network would score against one realised future if the world were exactly its own
    predictive distribution: the floor that noise alone puts under the bar on this population."""
    from ltvfeed.training.metrics import decile_mape_noise

    dist = network.module.predictive_distribution(inputs)
    return decile_mape_noise(dist["prob_return"], dist["mu"], dist["sigma"], draws=draws)


def seed_row(seed: int, realised: pd.DataFrame, expected: pd.DataFrame) -> dict[str, float]:
    """One training seed's network figures (the data and everything else fixed)."""
    net_realised, net_expected = realised.loc["ziln"], expected.loc["ziln"]
    return {
        "seed": seed,
        "gini": float(net_realised["normalized_gini"]),
        "spearman": float(net_realised["spearman"]),
        "decile_mape": float(net_realised["decile_mape"]),
        "decile_mape_vs_expected": float(net_expected["decile_mape"]),
        "vwde": float(net_realised["vwde"]),
        "total_error": float(net_realised["total_error"]),
        "total_error_vs_expected": float(net_expected["total_error"]),
        "beats_baselines": bool(
            (
                net_realised[["normalized_gini", "spearman"]]
                > realised.drop(index="ziln")[["normalized_gini", "spearman"]].max()
            ).all()
        ),
    }


def seed_spread(seed_runs: list[dict[str, float]]) -> float | None:
    """max - min of the total error over the training seeds (None with one seed)."""
    if len(seed_runs) < 2:
        return None
    errors = [run["total_error"] for run in seed_runs]
    return float(max(errors) - min(errors))


def value_deciles(y: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """The metric's decile table plus each decile's share of the actual value: deciles holding almost no value
    (a buyer or two among thousands) have huge percentage errors that say nothing about the money."""
    from ltvfeed.training.metrics import decile_table

    table = decile_table(y, predicted)
    table["value_share"] = table["actual_mean"] * table["n"] / float(np.sum(y))
    return table


def bars(metrics: pd.DataFrame, figures: dict[str, float]) -> list[tuple[str, str, bool]]:
    from ltvfeed.training.metrics import DECILE_MAPE_VALUED_BAR, TOTAL_ERROR_BAR, VWDE_BAR

    net = metrics.loc["ziln"]
    baselines = metrics.drop(index="ziln")
    spread = seed_spread(figures["seed_runs"])
    seed_bar = []
    if spread is not None:
        seed_bar = [
            (
                f"spread of the total error over {len(figures['seed_runs'])} seeds <= 2 points",
                f"{spread * 100:.1f} points",
                bool(spread <= 0.02),
            )
        ]
    return [
        *seed_bar,
        (
            "ZILN normalized Gini > both baselines",
            f"{net['normalized_gini']:.4f} vs {baselines['normalized_gini'].max():.4f}",
            bool(net["normalized_gini"] > baselines["normalized_gini"].max()),
        ),
        (
            "ZILN Spearman > both baselines",
            f"{net['spearman']:.4f} vs {baselines['spearman'].max():.4f}",
            bool(net["spearman"] > baselines["spearman"].max()),
        ),
        ("ZILN VWDE <= 0.10 (realised future)", f"{net['vwde']:.4f}", bool(net["vwde"] <= VWDE_BAR)),
        (
            "ZILN total within +-5 % (realised future)",
            f"{net['total_error']:+.2%}",
            bool(abs(net["total_error"]) <= TOTAL_ERROR_BAR),
        ),
        (
            "ZILN decile MAPE over deciles holding >= 1 % of the value <= 0.15",
            f"{net['decile_mape_valued']:.4f}",
            bool(net["decile_mape_valued"] <= DECILE_MAPE_VALUED_BAR),
        ),
        (
            "training on >= 100k users < 10 min",
            f"{figures['train_rows']:,} rows, {figures['ziln_fit_s']:.0f} s",
            bool(figures["train_rows"] >= 100_000 and figures["ziln_fit_s"] < 600),
        ),
        (
            "batch scoring >= 50k users/s (pyfunc)",
            f"{figures['score_pyfunc_users_per_s']:,.0f} users/s",
            bool(figures["score_pyfunc_users_per_s"] >= 50_000),
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=170_000, help="simulated users (~60%% exist at T)")
    parser.add_argument("--days", type=int, default=1095, help="observed days (3 x horizon: see above)")
    parser.add_argument("--horizon-days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument(
        "--train-cutoffs", type=int, default=1, help="training cutoffs (>1: the latest calibrates out of time)"
    )
    parser.add_argument("--cutoff-step-days", type=int, default=30, help="days between training cutoffs")
    parser.add_argument(
        "--seeds", type=int, default=1, help="train the network with this many seeds (from --seed) on the same data"
    )
    parser.add_argument(
        "--no-align-history", action="store_true", help="the design before history alignment (for before/after)"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)  # the bar is for 2 cores
    metrics, figures = run(
        args.users,
        args.days,
        args.horizon_days,
        args.seed,
        args.progress,
        args.seeds,
        args.train_cutoffs,
        args.cutoff_step_days,
        not args.no_align_history,
    )
    head = (
        f"{args.users:,} simulated users, {args.days} days, H = {args.horizon_days} d, seed {args.seed}, "
        f"{args.train_cutoffs} training cutoff(s) {args.cutoff_step_days} d apart"
    )
    print(f"\nLTV benchmark: {head}")
    print(
        f"training rows {figures['train_rows']:,} (features at end - H), holdout rows {figures['holdout_rows']:,} "
        f"(ground truth), {figures['features']} features; {figures['ziln_members']} ensemble member(s), "
        f"calibrated {figures['calibration']}"
    )
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 4):
        print("\n" + metrics.to_string(float_format=lambda v: f"{v:.4f}"))
    print()
    for name in (
        "simulate_and_features_s", "ziln_fit_s", "ziln_epochs", "btyd_fit_s",
        "score_network_users_per_s", "score_pyfunc_users_per_s", "peak_rss_mb",
        "train_share_with_revenue", "holdout_share_with_revenue",
    ):  # fmt: skip
        value = figures[name]
        print(f"  {name:30} {value:,.3f}" if value < 10 else f"  {name:30} {value:,.0f}")
    with pd.option_context("display.width", 160, "display.precision", 4):
        print("\nZILN holdout deciles (0 = lowest prediction; ape NaN where nobody bought):")
        print(figures["ziln_decile_table"].to_string(float_format=lambda v: f"{v:.4f}"))
        print("\nthe same deciles against E[spend | hidden traits]:")
        print(figures["ziln_decile_table_vs_expected"].to_string(float_format=lambda v: f"{v:.4f}"))
        print(
            "\nmetrics against E[spend | hidden traits] "
            f"(expected / realised total {figures['expected_over_realised']:.3f}):"
        )
        print(figures["metrics_vs_expected"].to_string(float_format=lambda v: f"{v:.4f}"))
    value_mape = figures["ziln_decile_mape_value_deciles"]
    print(f"  decile MAPE over the deciles holding >= 1% of the value (bar <= 0.15): {value_mape:.4f}")
    noise = figures["decile_mape_noise"]
    print(
        f"\nplain decile MAPE (information) {metrics.loc['ziln', 'decile_mape']:.3f}; a perfectly specified model "
        f"would score here (futures drawn {noise.draws} times from the "
        f"network's own distribution): median {noise.median:.3f}, 90 % of draws in [{noise.low:.3f}, "
        f"{noise.high:.3f}], below {noise.threshold} in {noise.share_below:.0%} of draws"
    )
    if len(figures["seed_runs"]) > 1:
        runs = pd.DataFrame(figures["seed_runs"]).set_index("seed")
        print("\nthe network with other training seeds (same data):")
        print(runs.to_string(float_format=lambda v: f"{v:.4f}"))
        print(
            runs.drop(columns="beats_baselines")
            .agg(["median", "min", "max"])
            .to_string(float_format=lambda v: f"{v:.4f}")
        )
    print("\n| bar | value | met |\n|---|---|---|")
    results = bars(metrics, figures)
    for name, value, ok in results:
        print(f"| {name} | {value} | {'yes' if ok else 'NO'} |")
    return 0 if all(ok for *_, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of ``ltvfeed simulate``: users/s, events/s and peak RSS of the vectorised simulator at a small and
at the target size, against a straightforward per-user Python loop measured in the same run.

    .venv/bin/python bench/bench_simulate.py                      # target: 100k users x 5k items x 180 days
    .venv/bin/python bench/bench_simulate.py --users 20000        # scaled down

Every measurement runs in its own subprocess so that its peak RSS is its own. The vectorised runs go through
``simulate_to_directory`` (the CLI's path: generation + Parquet writing); the small size is also timed without
writing. The baseline generates the same story (traits, sessions, views, carts, orders) one user, one session,
one view at a time with ``random`` and builds DataFrames at the end; it does not write files.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

END_DATE = date(2025, 1, 1)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _config(users: int, items: int, days: int, chunk_users: int):
    from ltvfeed.simulator import SimulationConfig

    return SimulationConfig(n_users=users, n_items=items, days=days, seed=1, end_date=END_DATE, chunk_users=chunk_users)


def run_vectorised(users: int, items: int, days: int, chunk_users: int, write: bool) -> dict:
    from ltvfeed.simulator import simulate_to_directory
    from ltvfeed.simulator.shop import iter_chunks

    config = _config(users, items, days, chunk_users)
    started = time.perf_counter()
    if write:
        with tempfile.TemporaryDirectory(prefix="bench-simulate-") as out:
            summary = simulate_to_directory(config, Path(out), progress=True)
            size_mb = sum(p.stat().st_size for files in summary.files.values() for p in files) / 2**20
        rows = summary.rows
    else:
        size_mb = 0.0
        _, chunks = iter_chunks(config, progress=True)
        rows = {}
        for chunk in chunks:
            for kind, table in {**chunk.raw(), **chunk.ground_truth()}.items():
                rows[kind] = rows.get(kind, 0) + table.num_rows
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "parquet_mb": size_mb, "peak_rss_mb": peak_rss_mb()}


def run_baseline(users: int, items: int, days: int) -> dict:
    """The obvious implementation: nested Python loops over users, sessions and views."""
    import pandas as pd

    from ltvfeed.simulator.catalog import PRICE_BINS, PRICE_ELASTICITY, build_catalog
    from ltvfeed.simulator.vocab import CATEGORIES

    config = _config(users, items, days, chunk_users=users)
    p = config.params
    started = time.perf_counter()
    catalog = build_catalog(config)
    rnd = random.Random(1)
    n_cat = len(CATEGORIES)
    prices = catalog.price_cents.tolist()
    members = [[i for i in range(items) if catalog.category[i] == c] for c in range(n_cat)]
    popularity = [rnd.lognormvariate(0, 1) for _ in range(items)]
    cum = {}
    for c in range(n_cat):
        median = sorted(prices[i] for i in members[c])[len(members[c]) // 2]
        for b in range(PRICE_BINS):
            w = [popularity[i] * (prices[i] / median) ** (-PRICE_ELASTICITY[b]) for i in members[c]]
            acc, total = [], 0.0
            for x in w:
                total += x
                acc.append(total)
            cum[c, b] = acc
    weights = [c.weight for c in CATEGORIES]

    def pick_item(taste_cum: list[float], price_bin: int) -> int:
        c = min(bisect.bisect_right(taste_cum, rnd.random() * taste_cum[-1]), n_cat - 1)
        acc = cum[c, price_bin]
        return members[c][min(bisect.bisect_right(acc, rnd.random() * acc[-1]), len(acc) - 1)]

    def poisson(lam: float) -> int:
        if lam > 30:
            return max(0, round(rnd.gauss(lam, math.sqrt(lam))))
        k, t, limit = 0, rnd.random(), math.exp(-lam)
        while t > limit:
            k += 1
            t *= rnd.random()
        return k

    events, orders, lines = [], [], []
    for u in range(users):
        signup = -rnd.uniform(0, 365) if rnd.random() < p.pre_window_signup_share else days * rnd.random()
        rate = rnd.gammavariate(p.purchase_rate_shape, p.mean_purchase_rate / p.purchase_rate_shape)
        hazard = rnd.gammavariate(p.hazard_shape, 1 / (p.mean_lifetime_days * p.hazard_shape))
        churn = signup + rnd.expovariate(hazard)
        conversion = rnd.betavariate(p.conversion_a, p.conversion_b)
        sessions_per_day = min(rate / conversion, p.max_sessions_per_day)
        basket = rnd.gammavariate(5, 0.2)
        price_bin = rnd.randrange(PRICE_BINS)
        taste = [rnd.gammavariate(0.35 * w, 1) + 1e-12 for w in weights]
        taste_cum = [sum(taste[: i + 1]) for i in range(n_cat)]
        begin, end = max(signup, 0.0), min(churn, days)
        for s in range(poisson(sessions_per_day * max(end - begin, 0.0))):
            t = (begin + rnd.random() * (end - begin)) * 86400
            session_id = f"s{u}-{s}"
            converts = rnd.random() < conversion
            n_lines = 1 + poisson(p.lines_mean * basket) if converts else 0
            n_views = max(poisson(p.extra_views_mean), 0 if converts else 1) + n_lines
            bought = []
            for v in range(n_views):
                item = pick_item(taste_cum, price_bin)
                dwell = round(20 * rnd.lognormvariate(0, 0.6), 1)
                t += 3 + rnd.expovariate(1 / 12) + dwell
                view = {"event_type": "view", "t": t, "user": u, "session": session_id, "item": item}
                events.append({**view, "dwell": dwell})
                if v >= n_views - n_lines:
                    bought.append(item)
                    events.append({**view, "event_type": "add_to_cart", "t": t + 1, "dwell": None})
            if converts:
                order_id = len(orders)
                amount = 0
                for item in bought:
                    q = 1 + poisson(0.6 * basket)
                    amount += q * prices[item]
                    lines.append({"order": order_id, "item": item, "quantity": q, "unit_price": prices[item]})
                orders.append({"order": order_id, "user": u, "t": t + 60, "amount": amount})
    frames = pd.DataFrame(events), pd.DataFrame(orders), pd.DataFrame(lines)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": {"events": len(frames[0]), "orders": len(frames[1]), "order_items": len(frames[2])},
        "peak_rss_mb": peak_rss_mb(),
    }


def measure(mode: str, **kwargs) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    args = [sys.executable, __file__, "--worker", mode, "--worker-args", json.dumps(kwargs)]
    proc = subprocess.run(args, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker(mode: str, kwargs: dict) -> None:
    result = run_baseline(**kwargs) if mode == "baseline" else run_vectorised(**kwargs, write=mode == "write")
    print(json.dumps(result))


def line(name: str, users: int, result: dict) -> str:
    events = result["rows"]["events"]
    return (
        f"{name:34} {users:>8,} users {result['seconds']:>8.2f} s {users / result['seconds']:>10,.0f} users/s "
        f"{events / result['seconds']:>12,.0f} events/s {events:>11,} events "
        f"peak RSS {result['peak_rss_mb']:>7,.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="target size (users)")
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--small-users", type=int, default=5_000)
    parser.add_argument("--baseline-users", type=int, default=500)
    parser.add_argument("--chunk-users", type=int, default=5_000)
    parser.add_argument("--worker", choices=["baseline", "generate", "write"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, json.loads(args.worker_args))
        return

    size = {"items": args.items, "days": args.days}
    print(f"items {args.items:,}, days {args.days}, chunk {args.chunk_users:,} users; each run in its own process")
    baseline = measure("baseline", users=args.baseline_users, **size)
    print(line("baseline: per-user Python loop", args.baseline_users, baseline))
    small_gen = measure("generate", users=args.small_users, chunk_users=args.chunk_users, **size)
    print(line("vectorised, generate only", args.small_users, small_gen))
    small = measure("write", users=args.small_users, chunk_users=args.chunk_users, **size)
    print(line("vectorised, generate + Parquet", args.small_users, small))
    target = measure("write", users=args.users, chunk_users=args.chunk_users, **size)
    print(line("vectorised, generate + Parquet", args.users, target))

    def per_event(result: dict) -> float:
        return result["rows"]["events"] / result["seconds"]

    print(f"target rows: {json.dumps(target['rows'])}; Parquet {target['parquet_mb']:.0f} MB")
    print(
        "speed-up vs baseline (events/s): "
        f"small generate {per_event(small_gen) / per_event(baseline):.0f}x, "
        f"small generate+write {per_event(small) / per_event(baseline):.0f}x, "
        f"target generate+write {per_event(target) / per_event(baseline):.0f}x"
    )
    baseline_projection = args.users / (args.baseline_users / baseline["seconds"])
    print(f"baseline projected to {args.users:,} users (generation only): {baseline_projection / 60:.1f} min")


if __name__ == "__main__":
    main()

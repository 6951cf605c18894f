"""Benchmark of point-in-time training frames (Feast ``ltv_model`` service) against Feast's own single call.

    .venv/bin/python bench/bench_retrieval.py                      # 12k users x 3 snapshots, up to 32k rows
    .venv/bin/python bench/bench_retrieval.py --sizes 2000,8000 --baseline-sizes 1000,2000

Needs the stack (LTVFEED_PG_DSN / LTVFEED_REDIS_URL, or the embedded servers). The first run builds its own
warehouse, ``ltvfeed_bench_retrieval``: a simulated shop, ``dbt run`` for the last ``--snapshots`` days, then
ANALYZE of the marts (autovacuum's state after any dbt build, and the one in which Feast's plan goes quadratic;
a mart without statistics happens to get hash joins). Later runs reuse it; ``--rebuild`` starts over and ``--drop``
removes it at the end.

Entity rows are (customer, snapshot time) pairs of the marts in a seeded random order, so every row finds its
snapshot. Three ways are timed on the same rows: ``ltvfeed.features.training_frame`` (the fixed path), Feast's
``get_historical_features(...).to_df()`` in one call (the baseline, quadratic: only small sizes) and in blocks of
1,000 rows (the workaround the propensity training used). The fixed frame is checked against the baseline's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import pandas as pd

END = date(2026, 3, 1)
DB = "ltvfeed_bench_retrieval"
SERVICE = "ltv_model"


def stack_for_bench(rebuild: bool):
    from ltvfeed.db import drop_database
    from ltvfeed.infra.stack import up
    from ltvfeed.settings import Settings

    settings = Settings().model_copy(update={"warehouse_db": DB, "mlflow_db": f"{DB}_mlflow", "redis_prefix": f"{DB}:"})
    stack = up(settings)
    if rebuild:
        drop_database(stack.pg_dsn, DB)
        stack = up(settings)
    return stack


def snapshots(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        if conn.execute("select to_regclass('marts.user_features')").fetchone()[0] is None:
            return 0
        return conn.execute("select count(distinct as_of) from marts.user_features").fetchone()[0]


def build_warehouse(stack, users: int, n_snapshots: int) -> None:
    """Simulate, load, build the marts for the last ``n_snapshots`` days, analyse them, apply the definitions."""
    import tempfile
    from pathlib import Path

    import psycopg

    from ltvfeed.dbt_runner import run_dbt
    from ltvfeed.features import apply
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory
    from ltvfeed.simulator.load import load_into_warehouse

    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        config = SimulationConfig(n_users=users, n_items=300, days=180, seed=3, end_date=END, horizons=(30,))
        print(f"simulating and loading {users:,} users ...", flush=True)
        simulate_to_directory(config, Path(tmp) / "shop", progress=False)
        load_into_warehouse(stack.warehouse_dsn, Path(tmp) / "shop")
        for back in range(n_snapshots - 1, -1, -1):
            as_of = END - timedelta(days=back)
            print(f"dbt run for as_of {as_of} ...", flush=True)
            dbt_vars = json.dumps({"as_of": as_of.isoformat(), "horizon_days": 30})
            run_dbt(stack.env(), ["run", "--vars", dbt_vars], target_path=Path(tmp) / "target")
    with psycopg.connect(stack.warehouse_dsn, autocommit=True) as conn:
        conn.execute("analyze")
    apply(stack)


def entity_rows(dsn: str, seed: int) -> pd.DataFrame:
    import psycopg

    with psycopg.connect(dsn) as conn:
        pairs = conn.execute("select user_id, feature_timestamp from marts.user_features order by 2, 1").fetchall()
    frame = pd.DataFrame(pairs, columns=["user_id", "event_timestamp"])
    frame["label"] = np.arange(len(frame), dtype=np.float64)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def timed(fn: Callable[[], pd.DataFrame]) -> tuple[pd.DataFrame, float]:
    started = time.perf_counter()
    frame = fn()
    return frame, time.perf_counter() - started


def feast_single(store, service, rows: pd.DataFrame) -> pd.DataFrame:
    """Feast's call as training_frame made it before the fix (row order restored the same way)."""
    rows = rows.assign(event_timestamp=pd.to_datetime(rows["event_timestamp"], utc=True), _row=range(len(rows)))
    frame = store.get_historical_features(entity_df=rows, features=service).to_df()
    return frame.sort_values("_row", kind="stable").drop(columns="_row").reset_index(drop=True)


def feast_blocks(store, service, rows: pd.DataFrame, block: int = 1000) -> pd.DataFrame:
    parts = [feast_single(store, service, rows.iloc[i : i + block]) for i in range(0, len(rows), block)]
    return pd.concat(parts, ignore_index=True)


def same_values(fixed: pd.DataFrame, baseline: pd.DataFrame, features: list[str]) -> bool:
    for column in ["label", *features]:
        a, b = fixed[column].reset_index(drop=True), baseline[column].reset_index(drop=True)
        if not ((a.isna() & b.isna()) | (a == b)).all():
            print(f"  MISMATCH in {column}")
            return False
    return True


def sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=12_000, help="simulated users (built once)")
    parser.add_argument("--snapshots", type=int, default=3, help="daily snapshots built (rows = users x snapshots)")
    parser.add_argument("--sizes", type=sizes, default=[2_000, 8_000, 32_000], help="rows for the fixed path")
    parser.add_argument("--baseline-sizes", type=sizes, default=[1_000, 2_000, 4_000], help="rows for one call")
    parser.add_argument("--block-sizes", type=sizes, default=[8_000], help="rows for the 1,000-row blocks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rebuild", action="store_true", help="drop and rebuild the benchmark warehouse")
    parser.add_argument("--drop", action="store_true", help="drop the benchmark warehouse at the end")
    args = parser.parse_args()

    from ltvfeed.db import drop_database
    from ltvfeed.features import feature_store, training_frame

    stack = stack_for_bench(args.rebuild)
    if snapshots(stack.warehouse_dsn) < args.snapshots:
        build_warehouse(stack, args.users, args.snapshots)
    rows = entity_rows(stack.warehouse_dsn, args.seed)
    largest = max(args.sizes + args.baseline_sizes + args.block_sizes)
    if largest > len(rows):
        print(f"the warehouse has {len(rows):,} (user, snapshot) rows, fewer than {largest:,}: use --rebuild --users")
        return 2
    store = feature_store(stack)
    service = store.get_feature_service(SERVICE)
    features = [f.name for p in service.feature_view_projections for f in p.features]
    training_frame(stack, rows.head(10), SERVICE, store=store)  # warm up the registry cache and connections

    results: list[tuple[str, int, float]] = []
    fixed_frames: dict[int, pd.DataFrame] = {}
    for n in sorted(set(args.sizes) | set(args.baseline_sizes)):
        frame, seconds = timed(lambda n=n: training_frame(stack, rows.head(n), SERVICE, store=store))
        fixed_frames[n] = frame
        results.append(("training_frame (fixed)", n, seconds))
        print(f"training_frame        {n:>7,} rows {seconds:8.2f} s {n / seconds:>10,.0f} rows/s", flush=True)
    ok = True
    for n in args.baseline_sizes:
        frame, seconds = timed(lambda n=n: feast_single(store, service, rows.head(n)))
        results.append(("Feast, one call (baseline)", n, seconds))
        print(f"Feast, one call       {n:>7,} rows {seconds:8.2f} s {n / seconds:>10,.0f} rows/s", flush=True)
        ok &= same_values(fixed_frames[n], frame, features)
    for n in args.block_sizes:
        frame, seconds = timed(lambda n=n: feast_blocks(store, service, rows.head(n)))
        results.append(("Feast, 1,000-row blocks", n, seconds))
        print(f"Feast, 1,000-row blocks {n:>5,} rows {seconds:8.2f} s {n / seconds:>10,.0f} rows/s", flush=True)
        if n in fixed_frames:
            ok &= same_values(fixed_frames[n], frame, features)

    print(f"\n{len(rows):,} (user, snapshot) rows available, {len(features)} features, service {SERVICE}")
    print("\n| method | entity rows | seconds | rows/s |\n|---|---|---|---|")
    for method, n, seconds in results:
        print(f"| {method} | {n:,} | {seconds:.2f} | {n / seconds:,.0f} |")
    n = max(args.baseline_sizes)
    fixed = next(s for m, k, s in results if k == n and m.startswith("training_frame"))
    base = next(s for m, k, s in results if k == n and m.startswith("Feast, one"))
    print(f"\nspeed-up over the single Feast call at {n:,} rows: {base / fixed:.1f}x")
    print("fixed frames equal the baseline's" if ok else "FIXED FRAMES DIFFER FROM THE BASELINE")
    if args.drop:
        for db in (DB, f"{DB}_mlflow"):
            drop_database(stack.pg_dsn, db)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of ``ltvfeed features get USER``: wall time of the whole command, as a person or a script runs it.

    .venv/bin/python bench/bench_features_get.py                   # 5 runs of each command
    .venv/bin/python bench/bench_features_get.py --runs 10 --keep  # keep the warehouse for the next run

Needs the stack (LTVFEED_PG_DSN / LTVFEED_REDIS_URL, or the embedded servers). Builds its own warehouse
``ltvfeed_bench_features_get`` and Redis project once (a small simulated shop, ``dbt run`` for one cutoff, Feast
apply and materialise); later runs with ``--keep`` reuse it, and without ``--keep`` it is removed at the end.

Timed in the same run, each as a fresh process (median of ``--runs``):
- ``python -c pass`` and ``ltvfeed --help``: the floor any command pays (interpreter, CLI start-up);
- the baseline: the same read as ``features get`` made it before (``up()``, a plain ``import feast``);
- ``ltvfeed features get USER`` for each feature service keyed by user;
- the same read in-process on a warm FeatureStore (the Redis round trip itself).
Printed: each command's median and its ratio to ``ltvfeed --help``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

END = date(2026, 3, 1)
DB = "ltvfeed_bench_features_get"
ROOT = Path(__file__).resolve().parents[1]
LTVFEED = str(Path(sys.executable).with_name("ltvfeed"))


def bench_settings():
    from ltvfeed.settings import Settings

    return Settings().model_copy(update={"warehouse_db": DB, "mlflow_db": f"{DB}_mlflow", "redis_prefix": f"{DB}:"})


def build(stack, users: int) -> None:
    """Simulate, load, build every mart for END, apply the Feast definitions and load Redis."""
    import json
    import tempfile

    import psycopg

    from ltvfeed.dbt_runner import run_dbt
    from ltvfeed.features import apply, cutoff, materialize
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory
    from ltvfeed.simulator.load import load_into_warehouse

    with psycopg.connect(stack.warehouse_dsn) as conn:
        if conn.execute("select to_regclass('marts.user_features')").fetchone()[0] is not None:
            return  # built by an earlier run with --keep
    with tempfile.TemporaryDirectory(prefix="bench-features-get-") as tmp:
        config = SimulationConfig(n_users=users, n_items=100, days=120, seed=3, end_date=END, horizons=(30,))
        print(f"building the benchmark warehouse ({users} users, dbt run for {END}) ...", flush=True)
        simulate_to_directory(config, Path(tmp) / "shop", progress=False)
        load_into_warehouse(stack.warehouse_dsn, Path(tmp) / "shop")
        dbt_vars = json.dumps({"as_of": END.isoformat(), "horizon_days": 30})
        run_dbt(stack.env(), ["run", "--vars", dbt_vars], target_path=Path(tmp) / "target")
    apply(stack)
    materialize(stack, cutoff(END), cutoff(END))


def first_user(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("select min(user_id) from marts.user_features").fetchone()[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_seconds(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float, str]:
    """Median wall and CPU (user + system) seconds of ``cmd`` run as a fresh process; its last output."""
    walls, cpus, out = [], [], ""
    for _ in range(runs):
        started, cpu = time.perf_counter(), cpu_seconds()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, check=False)
        walls.append(time.perf_counter() - started)
        cpus.append(cpu_seconds() - cpu)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        out = done.stdout
    return statistics.median(walls), statistics.median(cpus), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (median reported)")
    parser.add_argument("--users", type=int, default=300, help="simulated users (built once)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark warehouse and Redis keys")
    args = parser.parse_args()

    from ltvfeed.db import drop_database
    from ltvfeed.features import OnlineFeatures, clear_online, feature_store
    from ltvfeed.infra.stack import up

    settings = bench_settings()
    stack = up(settings)
    try:
        build(stack, args.users)
        user = first_user(stack.warehouse_dsn)
        env = {
            **os.environ,
            "LTVFEED_WAREHOUSE_DB": settings.warehouse_db,
            "LTVFEED_MLFLOW_DB": settings.mlflow_db,
            "LTVFEED_REDIS_PREFIX": settings.redis_prefix,
        }
        rows: list[tuple[str, float, float]] = []
        for label, cmd in [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("ltvfeed --help", [LTVFEED, "--help"]),
        ]:
            rows.append((label, *median_seconds(cmd, env, args.runs)[:2]))
        # the baseline: the read as `features get` did it before (stack up, plain import of Feast)
        before = (
            "import sys; from ltvfeed.features import OnlineFeatures, feature_store;"
            " from ltvfeed.infra.stack import up; from ltvfeed.settings import get_settings;"
            " print(OnlineFeatures(feature_store(up(get_settings())), sys.argv[1]).columns('user_id', [sys.argv[2]]))"
        )
        wall, cpu, out = median_seconds([sys.executable, "-c", before, "ltv_scores", user], env, args.runs)
        assert user in out, out
        rows.append((f"before: up() + import feast + read {user} (ltv_scores)", wall, cpu))
        store = feature_store(stack)
        services = [s.name for s in store.list_feature_services()]
        user_services = []
        for name in sorted(services):
            reader = OnlineFeatures(store, name)
            try:
                reader.refs("user_id")
            except Exception:  # not keyed by user
                continue
            user_services.append(name)
        for name in user_services:
            wall, cpu, out = median_seconds([LTVFEED, "features", "get", user, "--service", name], env, args.runs)
            assert user in out, out
            rows.append((f"ltvfeed features get {user} --service {name}", wall, cpu))
        reader = OnlineFeatures(store, user_services[0])
        reader.columns("user_id", [user])  # warm
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(100):
            reader.columns("user_id", [user])
        in_process = ((time.perf_counter() - started) / 100, (time.process_time() - cpu) / 100)
        rows.append((f"in-process read, warm store ({user_services[0]})", *in_process))
    finally:
        if not args.keep:
            try:
                clear_online(stack)
            finally:
                for db in (settings.warehouse_db, settings.mlflow_db):
                    drop_database(stack.pg_dsn, db)

    floor = rows[1]
    print(f"\nload: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min); median of {args.runs} runs\n")
    print("| command | wall s | CPU s | wall x ltvfeed --help | CPU x ltvfeed --help |\n|---|---|---|---|---|")
    for label, wall, cpu in rows:
        print(f"| {label} | {wall:.3f} | {cpu:.3f} | {wall / floor[1]:.2f} | {cpu / floor[2]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

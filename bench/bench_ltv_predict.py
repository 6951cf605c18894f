"""``ltvfeed ltv predict`` end to end on transaction logs shaped like real shops: the path a shop with only a log
takes (import, dbt snapshots, training, scoring), judged against each customer's realised revenue after the
as-of date, over several training seeds, with and without history alignment in the same run.

    .venv/bin/python bench/bench_ltv_predict.py                 # the three shapes of bench_ltv_logs.py, 3 seeds
    .venv/bin/python bench/bench_ltv_predict.py --seeds 5 --scale 0.5

Each log (``ltvfeed.simulator.transaction_logs``, future included) is imported with ``transaction_log=True`` into
a throwaway warehouse on the configured (or embedded) PostgreSQL; ``predict_customers`` (what the command runs)
only reads data before the as-of date. Printed per shape and design: total error (median, spread over seeds),
VWDE and Spearman against the realised future. Bar (issue 15): total within +-10 %.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from bench_ltv_logs import SHAPES, TOTAL_ERROR_BAR


def run_shape(name: str, scale: float, seeds: int, workdir: Path) -> list[dict]:
    from ltvfeed.db import drop_database
    from ltvfeed.infra.stack import up
    from ltvfeed.ingest import import_file
    from ltvfeed.settings import Settings
    from ltvfeed.simulator import transaction_logs
    from ltvfeed.training.fit import TrainConfig
    from ltvfeed.training.ltv_backtest import orders_from_log, revenue_in
    from ltvfeed.training.ltv_predict import predict_customers
    from ltvfeed.training.metrics import spearman, total_error, vwde

    generator, kwargs, as_of, horizon = SHAPES[name]
    kwargs = {k: max(int(v * scale), 200) for k, v in kwargs.items()}
    log = getattr(transaction_logs, generator)(**kwargs, seed=0)
    path = workdir / f"{generator}.csv"
    log.to_csv(path, index=False)
    tag = f"ltvfeed_bench_{uuid.uuid4().hex[:8]}"
    settings = Settings(state_dir=workdir / "state", warehouse_db=tag, mlflow_db=f"{tag}_mlflow")
    stack = up(settings)
    rows = []
    try:
        import_file(stack.warehouse_dsn, "orders", path, transaction_log=True)
        orders = orders_from_log(log)
        designs = {"shipped": TrainConfig(), "no history alignment": TrainConfig(align_history=False)}
        for design, config in designs.items():
            for seed in range(seeds):
                frame, plan = predict_customers(stack, as_of, horizon, config=replace(config, seed=seed))
                y = revenue_in(orders, frame["customer_id"], as_of, horizon)
                pred = frame["predicted_ltv"].to_numpy()
                rows.append(
                    {
                        "shape": name,
                        "design": design,
                        "seed": seed,
                        "customers": len(frame),
                        "plan": plan.describe(),
                        "total_error": total_error(y, pred),
                        "vwde": vwde(y, pred),
                        "spearman": spearman(y, pred),
                    }
                )
    finally:
        for db in (settings.warehouse_db, settings.mlflow_db):
            drop_database(stack.pg_dsn, db)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every shape's customer count")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="ltvfeed-bench-predict-") as tmp:
        results = pd.DataFrame([r for name in SHAPES for r in run_shape(name, args.scale, args.seeds, Path(tmp))])
    for shape, plan in results.groupby("shape", sort=False)["plan"].first().items():
        print(f"{shape}: {plan}")
    table = results.groupby(["shape", "design"], sort=False).agg(
        customers=("customers", "first"),
        total_error=("total_error", "median"),
        spread_pts=("total_error", lambda s: 100 * (s.max() - s.min())),
        vwde=("vwde", "median"),
        spearman=("spearman", "median"),
    )
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    shipped = table.xs("shipped", level="design")
    total_ok = bool((shipped["total_error"].abs() <= TOTAL_ERROR_BAR).all())
    print(f"\n| total within +-10 % on every shape (median over seeds) | {'yes' if total_ok else 'NO'} |")
    errors = shipped["total_error"].to_numpy(dtype=float)
    print(f"(largest total error {float(errors[np.argmax(np.abs(errors))]):+.1%})")
    return 0 if total_ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""``ltvfeed ltv predict`` on a shop that has nothing but a transaction log (customer_id, order_date, amount): a
log is imported with ``transaction_log=True``; predict gives one row per customer seen before DATE with finite
values; appending later transactions and predicting again through the CLI gives the same file, byte for byte.
Where the history is cut is tested in tests/unit/test_ltv_predict.py."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

AS_OF = date(2024, 10, 1)
HORIZON = 365  # longer than the log allows before AS_OF: exercises the scaled window


def transaction_log(seed: int, start: date, end: date, n_customers: int, first_id: int = 0) -> pd.DataFrame:
    """A plain log: customers arrive over the period, buy at their own rate, spend at their own level."""
    rng = np.random.default_rng(seed)
    days = (end - start).days
    rows = []
    for i in range(n_customers):
        arrival = int(rng.integers(0, days))
        rate = rng.gamma(0.8, 0.02)  # orders per day
        level = rng.lognormal(3.5, 0.6)
        t = arrival
        while t < days:
            rows.append((f"C{first_id + i:05d}", start + timedelta(days=t), round(level * rng.lognormal(0, 0.3), 2)))
            t += 1 + int(rng.exponential(1 / rate))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


@pytest.mark.integration
def test_predict_from_a_transaction_log_uses_only_data_before_as_of(empty_shop, tmp_path):
    from ltvfeed.ingest import import_file
    from ltvfeed.training.ltv_predict import predict_customers, write_csv

    log = transaction_log(1, date(2024, 1, 1), date(2024, 12, 31), 400)
    log.to_csv(tmp_path / "log.csv", index=False)
    report = import_file(empty_shop.warehouse_dsn, "orders", tmp_path / "log.csv", transaction_log=True)
    assert report.rows_loaded == len(log) and report.rows_quarantined == 0

    frame, plan = predict_customers(empty_shop, AS_OF, HORIZON)
    assert plan.scaled and plan.label_days == (AS_OF - log["order_date"].min()).days // 2  # half the history
    seen = sorted(log.loc[log["order_date"] < AS_OF, "customer_id"].unique())
    assert list(frame["customer_id"]) == seen  # every customer seen before AS_OF, once, nobody later
    assert list(frame.columns) == ["customer_id", "predicted_ltv", "prob_return"]
    assert np.isfinite(frame[["predicted_ltv", "prob_return"]].to_numpy()).all()
    assert (frame["predicted_ltv"] >= 0).all() and frame["prob_return"].between(0, 1).all()
    # it ranks: the customers who spent the most before AS_OF are predicted above those who spent least
    past = log[log["order_date"] < AS_OF].groupby("customer_id")["amount"].sum().reindex(frame["customer_id"])
    assert np.corrcoef(past.rank(), frame["predicted_ltv"].rank())[0, 1] > 0.3
    first = write_csv(frame, tmp_path / "first.csv")

    # later transactions arrive (existing and new customers, all on or after AS_OF): the output must not move
    later = pd.concat(
        [
            transaction_log(2, AS_OF, date(2025, 6, 30), 150, first_id=0),  # existing ids buy again
            transaction_log(3, AS_OF, date(2025, 6, 30), 50, first_id=5000),  # brand-new customers
        ]
    )
    assert later["order_date"].min() >= AS_OF
    later.to_csv(tmp_path / "later.csv", index=False)
    import_file(empty_shop.warehouse_dsn, "orders", tmp_path / "later.csv", transaction_log=True)
    env = {**os.environ, **empty_shop.env()}
    command = [sys.executable, "-m", "ltvfeed.cli", "ltv", "predict", "--as-of", AS_OF.isoformat()]
    command += ["--horizon-days", str(HORIZON), "--out", str(tmp_path / "again.csv")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "again.csv").read_text() == first.read_text()
    assert (tmp_path / "again.csv").read_text().splitlines()[0] == "customer_id,predicted_ltv,prob_return"

"""Rolling-origin LTV backtests on generated logs shaped like real shops (one acquisition cohort of which 70 % never
buy again, sparse 2-3 order histories, heavy-tailed order values, seasonality), not the simulated shop."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ltvfeed.errors import UserError
from ltvfeed.training.fit import TrainConfig
from ltvfeed.training.ltv_backtest import REPORT_METRICS, backtest, orders_from_log, summary_table, write_report

START = date(2024, 1, 1)
QUICK = TrainConfig(max_epochs=8, patience=3, batch_size=256, num_threads=1, seed=0)
CUTOFFS = [date(2024, 10, 1), date(2025, 1, 1)]
H = 90


def churning_cohort_log(n: int = 800, seed: int = 0) -> pd.DataFrame:
    """customer_id, order_date, amount: everyone acquired in the first 45 days; 70 % never order again; the rest
    order a few more times (most 1-2, a few many) over a personal lifetime, more often in the season's peak."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 45, n)
    value = rng.lognormal(3.5, 0.9, n)  # a customer's typical order value: heavy tail
    rows = [(i, int(first[i]), value[i] * rng.lognormal(0, 0.3)) for i in range(n)]
    returns = rng.random(n) < 0.3
    for i in np.flatnonzero(returns):
        lifetime = rng.exponential(300)
        extra = 1 + rng.poisson(1.0 if rng.random() < 0.8 else 8.0)
        days = first[i] + rng.uniform(1, 2 + lifetime, extra * 3)
        season = 0.5 + 0.5 * np.sin(2 * np.pi * days / 365.0) ** 2  # thinning: peaks twice a year
        kept = days[rng.random(days.size) < season][:extra]
        rows += [(i, int(d), value[i] * rng.lognormal(0, 0.3)) for d in kept if d < 600]
    frame = pd.DataFrame(rows, columns=["customer", "day", "amount"])
    return pd.DataFrame(
        {
            "customer_id": "c" + frame["customer"].astype(str).str.zfill(4),
            "order_date": [(START + timedelta(days=int(d))).isoformat() for d in frame["day"]],
            "amount": frame["amount"].round(2),
        }
    )


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return churning_cohort_log()


@pytest.fixture(scope="module")
def folds(log):
    return backtest(orders_from_log(log), CUTOFFS, H, QUICK)


def test_every_model_side_by_side_per_cutoff(log, folds) -> None:
    orders = orders_from_log(log)
    never_again = (orders.groupby("user_id").size() == 1).mean()
    assert 0.6 < never_again < 0.8  # the shape asked for: most of the cohort never returns
    table = summary_table(folds)
    assert list(table.columns) == list(REPORT_METRICS)
    assert list(table.index) == [(c.isoformat(), m) for c in CUTOFFS for m in ("ziln", "bgnbd_gamma_gamma", "naive")]
    ranking = table[["spearman", "normalized_gini", "top_decile_capture", "total_error", "vwde"]]
    assert np.isfinite(ranking.to_numpy()).all()
    for fold in folds:
        # the holdout is every customer seen before the cutoff, judged on revenue in [cutoff, cutoff + H)
        seen = orders.loc[orders["ordered_at"] < pd.Timestamp(fold.cutoff, tz="UTC"), "user_id"].nunique()
        assert fold.n_holdout == seen == len(fold.y)
        window = orders[
            (orders["ordered_at"] >= pd.Timestamp(fold.cutoff, tz="UTC"))
            & (orders["ordered_at"] < pd.Timestamp(fold.cutoff + timedelta(days=H), tz="UTC"))
        ]
        assert fold.y.sum() == pytest.approx(window["amount"].sum())
        # a model that knows who returns ranks better than chance on such a log
        assert fold.metrics.loc["ziln", "normalized_gini"] > 0.2


def test_only_orders_before_the_cutoff_reach_the_models(log, folds) -> None:
    cutoff = CUTOFFS[0]
    frame = log.copy()
    later = pd.to_datetime(frame["order_date"]).dt.date >= cutoff
    frame.loc[later, "amount"] = frame.loc[later, "amount"] * 3  # the future changes, the past does not
    frame = pd.concat(  # and orders after every judged window exist
        [frame, pd.DataFrame({"customer_id": ["c0001"], "order_date": ["2025-06-01"], "amount": [1e6]})]
    )
    (changed,) = backtest(orders_from_log(frame), [cutoff], H, QUICK)
    before = folds[0]
    for name, predicted in before.predictions.items():
        pd.testing.assert_frame_equal(changed.predictions[name], predicted)
    np.testing.assert_allclose(changed.y, before.y * 3)


def test_report_has_tables_and_charts(folds, tmp_path) -> None:
    page = write_report(folds, tmp_path / "report")
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 2 * len(CUTOFFS)
    assert "bgnbd_gamma_gamma" in text and "vwde" in text
    saved = pd.read_csv(tmp_path / "report" / "backtest.csv")
    assert len(saved) == 3 * len(CUTOFFS) and set(REPORT_METRICS) <= set(saved.columns)


def test_bad_logs_and_cutoffs_are_one_line_errors(log) -> None:
    with pytest.raises(UserError, match="lacks column"):
        orders_from_log(log.drop(columns="amount"))
    broken = log.copy()
    broken.loc[3, "order_date"] = "someday"
    with pytest.raises(UserError, match=r"1 row\(s\).*first: data row 4"):
        orders_from_log(broken)
    orders = orders_from_log(log)
    with pytest.raises(UserError, match="after the log's last order day"):
        backtest(orders, [date(2025, 8, 1)], H, QUICK)
    with pytest.raises(UserError, match="log starts on 2024-01-01"):
        backtest(orders, [date(2024, 3, 1)], H, QUICK)
    with pytest.raises(UserError, match="at least one cutoff"):
        backtest(orders, [], H, QUICK)


def test_backtest_command_prints_and_saves(log, tmp_path) -> None:
    from typer.testing import CliRunner

    from ltvfeed.cli import app

    path = tmp_path / "orders.csv"
    log.to_csv(path, index=False)
    args = ["ltv", "backtest", str(path), "--cutoffs", "2025-01-01", "--horizon-days", "90"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "bgnbd_gamma_gamma" in result.output and "vwde" in result.output
    assert (tmp_path / "out" / "backtest.html").is_file()
    bad = CliRunner().invoke(app, [*args[:3], "--cutoffs", "2025-13-01"], terminal_width=200)
    assert isinstance(bad.exception, UserError) and "--cutoffs must be a date" in str(bad.exception)

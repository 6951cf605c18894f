"""Rolling-origin LTV backtests on generated logs shaped like real shops, not the simulated shop: one acquisition
cohort of which 70 % never buy again (sparse 2-3 order histories, heavy-tailed order values, seasonality), and a
grocer whose customers almost all keep buying on their own weekly-ish cycle, with little history before the cutoff.
The same log backtested from a warehouse is in tests/integration/test_ltv_backtest.py."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ltvfeed.errors import UserError
from ltvfeed.simulator.transaction_logs import START, churning_cohort_log, grocer_log
from ltvfeed.training.fit import TrainConfig
from ltvfeed.training.ltv_backtest import (
    REPORT_METRICS,
    backtest,
    orders_from_log,
    report_files,
    summary_table,
    write_report,
)

QUICK = TrainConfig(max_epochs=8, patience=3, batch_size=256, num_threads=1, seed=0)
CUTOFFS = [date(2024, 10, 1), date(2025, 1, 1)]
H = 90


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
    assert list(saved.columns) == ["cutoff", "model", *REPORT_METRICS] and len(saved) == 3 * len(CUTOFFS)
    assert list(zip(saved["cutoff"], saved["model"], strict=True)) == list(summary_table(folds).index)


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
        backtest(orders, [date(2024, 1, 1)], H, QUICK)
    with pytest.raises(UserError, match="4 days of history; predicting needs at least 14"):  # as `ltv predict`
        backtest(orders, [date(2024, 1, 5)], H, QUICK)
    with pytest.raises(UserError, match="at least one cutoff"):
        backtest(orders, [], H, QUICK)


def test_backtest_command_prints_and_saves(log, tmp_path) -> None:
    from typer.testing import CliRunner

    from ltvfeed.cli import app

    path = tmp_path / "orders.csv"
    log.to_csv(path, index=False)
    args = ["ltv", "backtest", str(path), "--cutoffs", "2025-01-01", "--horizon-days", "90"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out"), "--no-mlflow"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "bgnbd_gamma_gamma" in result.output and "vwde" in result.output
    assert (tmp_path / "out" / "backtest.html").is_file()
    assert "MLflow" not in result.output  # --no-mlflow: nothing logged, no stack needed
    bad = CliRunner().invoke(app, [*args[:3], "--cutoffs", "2025-13-01"], terminal_width=200)
    assert isinstance(bad.exception, UserError) and "--cutoffs must be a date" in str(bad.exception)


def test_a_log_file_or_the_warehouse_not_both_nor_neither(tmp_path) -> None:
    from typer.testing import CliRunner

    from ltvfeed.cli import app

    args = ["--cutoffs", "2025-01-01", "--horizon-days", "90", "--no-mlflow"]
    for sources in ([], [str(tmp_path / "orders.csv"), "--warehouse"]):
        result = CliRunner().invoke(app, ["ltv", "backtest", *sources, *args], terminal_width=200)
        assert isinstance(result.exception, UserError), result.output
        assert "either a transaction log file or --warehouse" in str(result.exception)


def test_every_cutoff_model_and_metric_is_one_mlflow_metric(folds, tmp_path) -> None:
    from ltvfeed.training.ltv_backtest_tracking import backtest_metrics, metric_key

    assert metric_key("2025-01-01", "bg/nbd+gg", "top decile (%)") == "2025-01-01.bg/nbd_gg.top decile ___"
    values = backtest_metrics(folds)
    table = summary_table(folds)
    for (cutoff, model), row in table.iterrows():
        for metric, value in row.items():
            key = f"{cutoff}.{model}.{metric}"
            assert values.get(key) == pytest.approx(value) if np.isfinite(value) else key not in values
    assert values["2024-10-01.n_holdout"] == folds[0].n_holdout
    assert all(np.isfinite(v) for v in values.values())
    write_report(folds, tmp_path / "report")
    files = report_files(folds, tmp_path / "report")
    assert sorted(files) == sorted((tmp_path / "report").iterdir())  # exactly what the report wrote


GROCER_CUTOFFS = [START + timedelta(days=117), START + timedelta(days=147)]  # history ~1.3 x H before the first


def test_a_grocer_whose_customers_keep_buying() -> None:
    raw = grocer_log()
    orders = orders_from_log(raw)
    seen = orders[orders["ordered_at"] < pd.Timestamp(GROCER_CUTOFFS[0], tz="UTC")]
    window = orders[
        (orders["ordered_at"] >= pd.Timestamp(GROCER_CUTOFFS[0], tz="UTC"))
        & (orders["ordered_at"] < pd.Timestamp(GROCER_CUTOFFS[0] + timedelta(days=H), tz="UTC"))
    ]
    assert window["user_id"].isin(seen["user_id"]).mean() > 0.9  # the shape asked for: they keep coming back
    assert seen["user_id"].nunique() / window["user_id"].nunique() < 1.1
    folds = backtest(orders, GROCER_CUTOFFS, H, QUICK)
    table = summary_table(folds)
    assert np.isfinite(table.drop(columns="auc_buys_again")).all(None)  # naive has no P(return) to judge
    assert np.isfinite(table.xs("ziln", level="model")).all(None)
    for fold in folds:
        assert (fold.y > 0).mean() > 0.85
        assert fold.metrics.loc["ziln", "normalized_gini"] > 0.2


def test_a_fold_learns_where_ltv_predict_would() -> None:
    """A grocer's 117-day log, 90 days ahead: too short for a full label window with eight weeks of history
    before it, so ``ltv predict`` splits the history in half; the backtest's fold learns at those very cutoffs
    (members and out-of-time calibration), not at D - H with 27 days of history."""
    from ltvfeed.training.ltv_backtest import backtest_fold
    from ltvfeed.training.ltv_predict import plan_predict

    orders = orders_from_log(grocer_log(n=300))
    cutoff = START + timedelta(days=117)
    plan = plan_predict(cutoff, 90, orders["ordered_at"].min().date())
    assert plan.scaled and len(plan.train_cutoffs) == 2
    fold = backtest_fold(orders, cutoff, 90, QUICK)
    known = [
        orders.loc[orders["ordered_at"] < pd.Timestamp(c, tz="UTC"), "user_id"].nunique() for c in plan.train_cutoffs
    ]
    assert fold.n_train == sum(known)
    assert fold.metrics.loc["ziln", "spearman"] > 0.8

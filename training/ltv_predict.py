"""``ltvfeed ltv predict``: LTV for every customer of a shop that has only a transaction log, learned from that
log alone, with no Airflow, MLflow or Feast.

For ``--as-of D`` and horizon N the model learns how customers described by their history at D - N spent in
[D - N, D), then describes every customer at D and predicts [D, D + N). Only data before D is read (features
at D - N and D use data before those days; labels end at D), so orders logged later never change the output.

The label window is the full N days whenever that leaves at least :data:`MIN_FEATURE_DAYS` of history before
D - N to describe customers with (or N days, when N is shorter). Only a shorter log is split in half: label
window L = (D - first day) // 2 days, cutoff D - L. Labels are then scaled by N / L (a steady spend rate), and
the probability of buying again is extrapolated from L to N days with a constant hazard: p_N = 1 - (1 - p_L) ^
(N / L). Both are approximations, logged when used; the plan says which applied. Why the full window first:
scaled labels assume the spend rate of the L days holds for N, which seasonality breaks (a 3-year sparse seasonal
log, N = 365: total +24 % with 273-day labels x 1.34, +2 % with 365-day labels and 182 days of history before
them); why not always: with too little history before the window, customers are described by a few weeks (a
grocer's 117-day log, N = 90: -11 % with 27 days of history, -4 % split in half). ``ltvfeed ltv backtest`` folds
learn where this plan says (:func:`ltvfeed.training.ltv_backtest.fold_plan`).

Two training cutoffs when the history allows: the network's members learn at D - L - s and the expected-LTV
calibration is learned at D - L (s = L / 4, at least a week), so the level is corrected out of time, for the
drift between windows (customers' histories grow longer, cohorts age), not only in sample.

Feature groups a transaction log lacks (engagement, demographics, preferences) are constant or missing in the
marts, and the network's encoder drops or neutralises them: an RFM/tenure model remains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ltvfeed import csv_output
from ltvfeed.errors import UserError
from ltvfeed.training.fit import TrainConfig

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack

log = logging.getLogger(__name__)

MIN_LABEL_DAYS = 7
MIN_FEATURE_DAYS = 56  # history before a full N-day label window that describes customers well enough (8 weeks)
OUTPUT_COLUMNS = ["customer_id", "predicted_ltv", "prob_return"]


@dataclass(frozen=True)
class PredictPlan:
    """Where ``predict`` cuts the history: features at ``train_cutoff``, labels in [train_cutoff, as_of)."""

    as_of: date
    horizon_days: int
    label_days: int
    step_days: int = 0  # > 0: an earlier cutoff the members train on; train_cutoff then calibrates out of time

    @property
    def train_cutoff(self) -> date:
        return self.as_of - timedelta(days=self.label_days)

    @property
    def train_cutoffs(self) -> tuple[date, ...]:
        """Ascending; the last one calibrates when there are two."""
        if not self.step_days:
            return (self.train_cutoff,)
        return (self.train_cutoff - timedelta(days=self.step_days), self.train_cutoff)

    @property
    def scale(self) -> float:
        """Label window -> horizon: revenue is multiplied by this (1 when the history is long enough)."""
        return self.horizon_days / self.label_days

    @property
    def scaled(self) -> bool:
        return self.label_days != self.horizon_days

    def describe(self) -> str:
        text = f"features at {self.train_cutoff}, labels [{self.train_cutoff}, {self.as_of}), predict at {self.as_of}"
        if self.step_days:
            text += f"; trained at {self.train_cutoffs[0]}, calibrated out of time at {self.train_cutoff}"
        if self.scaled:
            text += f"; history too short for {self.horizon_days} days: {self.label_days}-day labels x {self.scale:.3g}"
        return text


def plan_predict(as_of: date, horizon_days: int, first_day: date) -> PredictPlan:
    """The full ``horizon_days`` label window when enough history precedes it, else half the history (see the
    module doc)."""
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or horizon_days < 1:
        raise UserError(f"--horizon-days must be a positive whole number of days, got {horizon_days!r}")
    history = (as_of - first_day).days
    if history - horizon_days >= min(MIN_FEATURE_DAYS, horizon_days):
        label_days = horizon_days
    else:
        label_days = min(horizon_days, history // 2)
    if label_days < min(MIN_LABEL_DAYS, horizon_days):
        raise UserError(
            f"the data before {as_of} starts on {first_day}: {history} days of history; predicting needs at least "
            f"{2 * min(MIN_LABEL_DAYS, horizon_days)} (half to describe customers, half to see what they spent)"
        )
    return PredictPlan(as_of, horizon_days, label_days, calibration_step(label_days, history - label_days))


def calibration_step(label_days: int, history_days: int) -> int:
    """Days between the cutoff the members learn at and the later one that calibrates them: a quarter of the
    label window, at least a week; 0 (one cutoff) when fewer than a week of history would precede the earlier."""
    step = max(MIN_LABEL_DAYS, label_days // 4)
    return step if history_days - step >= MIN_LABEL_DAYS else 0


def extrapolate_prob(prob: np.ndarray, factor: float) -> np.ndarray:
    """P(buys within L days) -> P(buys within factor x L days) under a constant hazard."""
    p = np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0)
    return 1.0 - np.power(1.0 - p, factor)


def predict_customers(
    stack: Stack,
    as_of: date | None,
    horizon_days: int,
    *,
    config: TrainConfig | None = None,
    echo: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, PredictPlan]:
    """customer_id, predicted_ltv (revenue over the next ``horizon_days`` from ``as_of``), prob_return (buys
    at least once in that time), one row per customer seen before ``as_of``; and the plan used."""
    from ltvfeed.dbt_runner import build
    from ltvfeed.training.fit import LtvModel
    from ltvfeed.training.ltv_data import (
        as_model_input,
        complete_labels,
        ltv_feature_schema,
    )
    from ltvfeed.warehouse.extent import data_range, first_day_before
    from ltvfeed.warehouse.ltv_reads import CUTOFF, read_labels, snapshot_features
    from ltvfeed.warehouse.snapshots import dbt_target_dir

    dsn = stack.warehouse_dsn
    span = data_range(dsn)
    if span is None:
        raise UserError(
            "the warehouse has no orders: import a transaction log first (ltvfeed import orders FILE --transaction-log)"
        )
    data_end = span[1]
    as_of = as_of or data_end
    if as_of > data_end:
        raise UserError(
            f"the data ends on {data_end - timedelta(days=1)}: --as-of must be {data_end} or earlier, or the days in "
            "between would count as days without orders"
        )
    first_day = first_day_before(dsn, as_of)
    if first_day is None:
        raise UserError(f"no customer has data before {as_of}")
    plan = plan_predict(as_of, horizon_days, first_day)
    _say(echo, plan.describe())
    with dbt_target_dir(None) as target:
        for day in (*plan.train_cutoffs, as_of):
            _say(echo, f"building the customer snapshot for {day} (dbt) ...")
            build(stack, day, plan.label_days, "+user_features", target_path=target)
        build(stack, None, plan.label_days, "ltv_labels", target_path=target)
    labels = complete_labels(
        read_labels(dsn, plan.train_cutoffs, plan.label_days), plan.train_cutoffs, plan.label_days, observed_until=as_of
    )
    schema = ltv_feature_schema()
    parts = []
    for cutoff in plan.train_cutoffs:
        revenue = labels.loc[labels[CUTOFF] == cutoff, ["user_id", "revenue"]]
        rows = snapshot_features(dsn, cutoff, schema.columns)
        parts.append(rows.merge(revenue, on="user_id", how="inner", validate="one_to_one").assign(cutoff=cutoff))
    train = pd.concat(parts, ignore_index=True)
    y = train.pop("revenue").to_numpy(np.float64) * plan.scale
    inputs = as_model_input(train, schema)
    inputs.insert(0, "user_id", train["user_id"].to_numpy())
    _say(echo, f"training on {len(train)} customer rows of {', '.join(map(str, plan.train_cutoffs))} ...")
    model = LtvModel(horizon_days, config or TrainConfig(), categorical_columns=schema.categorical)
    model.fit(inputs, y, periods=train["cutoff"].to_numpy())
    current = snapshot_features(dsn, as_of, schema.columns)
    predicted = model.predict(as_model_input(current, schema))
    prob = predicted["prob_return"].to_numpy()
    if plan.scaled:
        log.warning("history shorter than the horizon: %s", plan.describe())
        prob = extrapolate_prob(prob, plan.scale)
    out = pd.DataFrame(
        {
            "customer_id": current["user_id"].to_numpy(),
            "predicted_ltv": predicted["expected_ltv"].to_numpy(np.float64),
            "prob_return": prob,
        }
    )
    return out.sort_values("customer_id", kind="stable").reset_index(drop=True), plan


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """The output file: customer_id,predicted_ltv,prob_return (6 decimals; ids that look like formulas quoted)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise UserError(f"the folder of --out does not exist: {path.parent}")
    return csv_output.write_csv(frame[OUTPUT_COLUMNS], path, index=False, float_format="%.6f")


def _say(echo: Callable[[str], None] | None, message: str) -> None:
    log.info("%s", message)
    if echo is not None:
        echo(message)

"""LTV training runs without servers: where a plan puts its cutoffs, that training sets never take labels from
incomplete windows, the baseline gate, model input types, that the pyfunc wrapper round-trips, and the
ltv_retrain DAG's shape and as_of rule. Runs on the real servers are in tests/integration/test_ltv_run.py."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ltvfeed.errors import UserError
from ltvfeed.settings import project_root
from ltvfeed.training.ltv_data import (
    FeatureSchema,
    as_model_input,
    complete_labels,
    plan_for_as_of,
    plan_for_cutoff,
    training_cutoffs,
)

# --------------------------------------------------------------------------------------------- unit: plans


def test_plan_for_as_of_reads_nothing_from_as_of_on():
    plan = plan_for_as_of(date(2026, 6, 1), horizon_days=90, n_cutoffs=3, step_days=30)
    assert plan.holdout_cutoff == date(2026, 3, 3)
    assert plan.holdout_cutoff + timedelta(days=90) == date(2026, 6, 1)  # holdout labels end at as_of
    assert plan.train_cutoffs == (date(2025, 10, 4), date(2025, 11, 3), date(2025, 12, 3))
    assert plan.train_cutoffs[-1] + timedelta(days=90) == plan.holdout_cutoff  # no label overlap
    assert plan.label_overlap_days == 0
    params = plan.params()
    assert params["horizon_days"] == 90 and params["holdout_cutoff"] == "2026-03-03"
    assert params["train_window_start"] == "2025-10-04" and params["train_window_end"] == "2025-12-03"
    assert type(plan).from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_plan_rules():
    plan = plan_for_cutoff(date(2025, 1, 1), horizon_days=30, n_cutoffs=2, step_days=7)
    assert plan.train_cutoffs == (date(2024, 12, 25), date(2025, 1, 1)) and plan.holdout_cutoff == date(2025, 1, 31)
    overlapping = plan_for_cutoff(date(2025, 1, 1), 30, holdout_cutoff=date(2025, 1, 11))
    assert overlapping.label_overlap_days == 20
    with pytest.raises(UserError, match="later than the last training cutoff"):
        plan_for_cutoff(date(2025, 1, 1), 30, holdout_cutoff=date(2025, 1, 1))
    with pytest.raises(UserError, match="not observed"):
        plan_for_as_of(date(2025, 6, 1), 30, holdout_cutoff=date(2025, 5, 15))
    with pytest.raises(UserError, match=">= 1"):
        training_cutoffs(date(2025, 1, 1), 0, 7)
    with pytest.raises(UserError, match="horizon_days"):
        plan_for_cutoff(date(2025, 1, 1), 0)


# -------------------------------------------------------------------------------------------- unit: labels


def _labels(rows):
    return pd.DataFrame(rows, columns=["user_id", "cutoff", "horizon_days", "revenue", "orders", "is_complete"])


def test_training_labels_never_come_from_incomplete_windows():
    c1, c2, c3 = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)
    labels = _labels(
        [
            ("a", c1, 30, 10.0, 1, True),
            ("b", c1, 30, 0.0, 0, True),
            ("a", c1, 60, 99.0, 2, True),  # another horizon: never mixed in
            ("a", c2, 30, 5.0, 1, True),
            ("a", c3, 30, 1.0, 1, False),  # window not fully observed: a lower bound
            ("b", c3, 30, 0.0, 0, False),
        ]
    )
    got = complete_labels(labels, [c1, c2], 30)
    assert list(zip(got["user_id"], got["cutoff"], got["revenue"], strict=True)) == [
        ("a", c1, 10.0),
        ("b", c1, 0.0),
        ("a", c2, 5.0),
    ]
    assert got["is_complete"].all()
    # asking for an incomplete cutoff is an error, not a smaller (or lower-bound) training set
    with pytest.raises(UserError, match="2025-03-01: window"):
        complete_labels(labels, [c1, c3], 30)
    # a run bounded by as_of must not read labels ending after it, even if the data has them
    with pytest.raises(UserError, match=r"2025-02-01.*ends after 2025-02-20"):
        complete_labels(labels, [c1, c2], 30, observed_until=date(2025, 2, 20))
    assert len(complete_labels(labels, [c1], 30, observed_until=date(2025, 1, 31))) == 2
    with pytest.raises(UserError, match="no labels"):
        complete_labels(labels, [date(2024, 1, 1)], 30)


def test_label_window_ends_exactly_cutoff_plus_horizon():
    """[c, c + H) is complete on day c + H and not one day earlier (the label of day c + H - 1 is not in yet)."""
    c = date(2025, 1, 1)
    labels = _labels([("a", c, 30, 10.0, 1, True), ("b", c, 30, 0.0, 0, True)])
    assert len(complete_labels(labels, [c], 30, observed_until=c + timedelta(days=30))) == 2
    with pytest.raises(UserError, match=r"2025-01-01: window \[2025-01-01, 2025-01-31\).*ends after 2025-01-30"):
        complete_labels(labels, [c], 30, observed_until=c + timedelta(days=29))


# -------------------------------------------------------------------------------- unit: the baseline gate


def _metric_table(ziln: tuple[float, float, float], naive: tuple[float, float, float], btyd=(0.5, 0.4, 0.3)):
    columns = ["normalized_gini", "spearman", "vwde"]
    return pd.DataFrame([ziln, btyd, naive], index=["ziln", "bgnbd_gamma_gamma", "naive"], columns=columns)


def test_baseline_gate_refuses_a_network_worse_than_any_baseline_on_any_gated_metric():
    from ltvfeed.training.ltv_run import BaselineGate, baseline_veto

    gate = BaselineGate()  # the default: ranking and calibration (vwde)
    assert baseline_veto(_metric_table((0.6, 0.5, 0.2), (0.4, 0.3, 0.9)), gate) is None
    assert baseline_veto(_metric_table((0.5, 0.4, 0.3), (0.4, 0.3, 0.9)), gate) is None  # level is not worse
    gini = baseline_veto(_metric_table((0.49, 0.5, 0.2), (0.4, 0.3, 0.9)), gate)
    assert gini == "worse than a baseline on the holdout (normalized_gini 0.4900 vs bgnbd_gamma_gamma 0.5000)"
    spearman = baseline_veto(_metric_table((0.6, 0.5, 0.2), (0.4, 0.55, 0.9)), gate)
    assert spearman is not None and "spearman 0.5000 vs naive 0.5500" in spearman
    calibration = baseline_veto(_metric_table((0.6, 0.5, 0.31), (0.4, 0.3, 0.9)), gate)
    assert calibration is not None and "vwde 0.3100 vs bgnbd_gamma_gamma 0.3000" in calibration
    assert (
        baseline_veto(
            _metric_table((0.6, 0.5, 0.31), (0.4, 0.3, 0.9)), BaselineGate(lower_is_better=("vwde",), tolerance=0.02)
        )
        is None
    )
    assert baseline_veto(_metric_table((0.6, 0.5, float("nan")), (0.4, 0.3, 0.9)), gate) is not None
    # a baseline that could not be scored (NaN) or fitted (no row) is no bar
    only_naive = _metric_table((0.6, 0.5, 0.2), (0.4, 0.3, 0.9)).drop(index="bgnbd_gamma_gamma")
    assert baseline_veto(only_naive, gate) is None


# ---------------------------------------------------------------------------------------- unit: the pyfunc


SCHEMA = FeatureSchema(numeric=("frequency", "monetary_total", "is_registered"), categorical=("country",))


def _toy_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frequency = rng.poisson(2.0, n)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "frequency": frequency.astype("int64"),
            "monetary_total": frequency * rng.lognormal(3, 0.5, n),
            "is_registered": rng.random(n) > 0.5,
            "country": rng.choice(["DE", "FR", None], n),
        }
    )
    y = np.where(rng.random(n) < 0.3 + 0.1 * np.minimum(frequency, 5), frame["monetary_total"] * 0.5 + 1, 0.0)
    return frame, y


def test_as_model_input_types():
    frame, _ = _toy_frame(20, 1)
    got = as_model_input(frame, SCHEMA)
    assert list(got.columns) == SCHEMA.columns
    assert all(got[c].dtype == np.float64 for c in SCHEMA.numeric)
    assert set(got["country"]) <= {"DE", "FR", "unknown"} and got["country"].dtype == object
    assert set(got["is_registered"]) <= {0.0, 1.0}
    with pytest.raises(UserError, match="lacks"):
        as_model_input(frame.drop(columns=["country"]), SCHEMA)


def test_pyfunc_round_trip(tmp_path: Path):
    import mlflow

    from ltvfeed.training.fit import LtvModel, TrainConfig
    from ltvfeed.training.ltv_pyfunc import OUTPUT_COLUMNS, horizon_of, save_ltv_model

    frame, y = _toy_frame(400, 2)
    inputs = as_model_input(frame, SCHEMA)
    inputs.insert(0, "user_id", frame["user_id"])
    model = LtvModel(30, TrainConfig(max_epochs=5, seed=3), categorical_columns=SCHEMA.categorical).fit(inputs, y)
    save_ltv_model(model, SCHEMA, tmp_path / "ltv", frame)

    loaded = mlflow.pyfunc.load_model(str(tmp_path / "ltv"))
    fresh, _ = _toy_frame(50, 9)
    expected = model.predict(as_model_input(fresh, SCHEMA)).reset_index(drop=True)
    got = loaded.predict(as_model_input(fresh, SCHEMA))
    assert list(got.columns) == OUTPUT_COLUMNS
    pd.testing.assert_frame_equal(got, expected[OUTPUT_COLUMNS])
    assert (got["p10"] <= got["p50"]).all() and (got["p50"] <= got["p90"]).all()
    assert ((got["prob_return"] >= 0) & (got["prob_return"] <= 1)).all()
    # the signature: the schema's columns in, the five outputs out; metadata names the horizon
    assert loaded.metadata.get_input_schema().input_names() == SCHEMA.columns
    assert loaded.metadata.get_output_schema().input_names() == OUTPUT_COLUMNS
    assert horizon_of(loaded) == 30
    # extra columns (a frame with more features, e.g. a champion scored on a newer service) are ignored
    wider = as_model_input(fresh, SCHEMA).assign(extra_feature=1.0)
    pd.testing.assert_frame_equal(loaded.predict(wider), got)


# ---------------------------------------------------------------------------------------- unit: the DAG


def test_retrain_dag_shape(tmp_path_factory):
    import os

    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(project_root() / "dags" / "ltv_retrain.py"))
    assert bag.import_errors == {}
    dag = bag.dags["ltv_retrain"]
    chain = ["prepare_training_data", "train_and_register", "promotion_gate", "batch_score", "materialize_predictions"]
    for upstream, downstream in itertools.pairwise(chain):
        assert upstream in dag.get_task(downstream).upstream_task_ids
    # weekly AND whenever ltv_pipeline's marts gate updates the marts asset
    assert type(dag.timetable).__name__ == "AssetOrTimeSchedule"
    assert [a.uri for a in dag.timetable.asset_condition.objects] == ["ltvfeed://warehouse/marts"]
    assert (dag.timetable.timetable.expression, str(dag.timetable.timetable.timezone)) == ("0 4 * * 1", "UTC")
    assert dag.params["horizon_days"] is None and dag.params["train_cutoffs"] == 1  # None: fits the history
    assert {"ltvfeed", "ltv"} <= set(dag.tags) and "ltv_retrain" in dag.doc_md
    assert dag.max_active_runs == 1


def test_retrain_as_of_rule():
    from types import SimpleNamespace

    from ltvfeed.cutoff import resolve_as_of as resolve_retrain_as_of

    def at(day: int, hour: int = 0) -> datetime:
        return datetime(2026, 3, day, hour, tzinfo=UTC)

    class GoneRun:  # the run behind an event was deleted: its lookup fails
        timestamp = at(9)

        @property
        def source_dag_run(self):
            raise RuntimeError("dag run not found")

    def event(when: datetime, conf: dict, logical: datetime | None, extra: dict | None = None) -> SimpleNamespace:
        run = SimpleNamespace(conf=conf, logical_date=logical, run_after=when)
        return SimpleNamespace(timestamp=when, source_dag_run=run, extra=extra)

    events = {"marts": [event(at(2, 1), {}, at(2)), event(at(5, 1), {"as_of": "2026-03-04"}, at(5)), GoneRun()]}
    # asset-triggered (no logical date in Airflow 3): the newest readable pipeline run's as_of, param first
    assert resolve_retrain_as_of({}, None, at(5, 2), events) == date(2026, 3, 4)
    assert resolve_retrain_as_of({}, None, at(5, 2), {"marts": [event(at(2, 1), {}, at(2))]}) == date(2026, 3, 2)
    # the snapshot named in the newest event (ltv_pipeline's marts gate) wins over its run's dates
    named = {"marts": [event(at(6, 1), {}, at(6), {"as_of": "2026-03-03"}), *events["marts"]]}
    assert resolve_retrain_as_of({}, None, at(6, 2), named) == date(2026, 3, 3)
    with pytest.raises(UserError, match="invalid as_of"):
        resolve_retrain_as_of({}, None, at(6, 2), {"marts": [event(at(6, 1), {}, None, {"as_of": "soon"})]})
    # scheduled or backfilled: the logical date; an explicit as_of param wins over everything
    assert resolve_retrain_as_of({}, at(9, 4), at(9, 4), events) == date(2026, 3, 9)
    assert resolve_retrain_as_of({"as_of": "2025-01-06"}, at(9, 4), at(9, 4), events) == date(2025, 1, 6)
    # nothing readable, no warehouse to ask: the day the run started
    assert resolve_retrain_as_of({}, None, at(7, 3), {"marts": [GoneRun()]}) == date(2026, 3, 7)

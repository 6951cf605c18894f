"""LTV training runs, promotion, batch scoring and the ltv_retrain DAG.

Unit (no servers): where a plan puts its cutoffs, that training sets never take labels from incomplete windows,
and that the pyfunc wrapper round-trips.

Integration: one small simulated shop (module-scoped, with its own warehouse, MLflow database, state dir and
Redis project): the first run builds the missing snapshots with dbt and registers `ltv` v1 as champion with its
metrics, charts and signature; the same run again reproduces v1's metrics exactly and is refused (no gain); a
deliberately worse configuration is refused with the reason recorded; batch scoring writes the predictions table
and the online store (Feast), and a champion moved by hand is used by the next scoring, online too; finally
`airflow dags test ltv_retrain` runs the whole DAG once.
"""

from __future__ import annotations

import itertools
import json
import math
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
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

E = date(2026, 3, 1)  # the simulated shop's end: the scoring snapshot
H = 45
N_USERS = 800

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

    gate = BaselineGate(lower_is_better=("vwde",))
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


# ------------------------------------------------------------------------------------------- integration


@pytest.fixture(scope="module")
def shop(simulated_shop, tmp_path_factory):
    """A simulated shop in its own warehouse (marts built for E), MLflow database, state dir, Redis project."""
    with simulated_shop(tmp_path_factory.mktemp("ltv_state"), "ltv", n_users=N_USERS, end=E, horizon=H) as s:
        yield s


PLAN = plan_for_as_of(E, horizon_days=H, n_cutoffs=2, step_days=30)


def _client(shop):
    from ltvfeed.infra.tracking import configure_mlflow

    return configure_mlflow(shop)


def _rows(dsn: str, query: str, *args):
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, args).fetchall()


@pytest.fixture(scope="module")
def prepared(shop):
    """The plan's snapshots built by dbt (only E existed) and its labels checked, once for the module; every test
    then trains under a model name of its own, so no test depends on versions another one made."""
    from ltvfeed.training.ltv_run import prepare_training_data
    from ltvfeed.warehouse.snapshots import snapshot_dates

    assert snapshot_dates(shop.warehouse_dsn) == [E]
    prepare_training_data(shop, PLAN)
    assert snapshot_dates(shop.warehouse_dsn) == sorted({*PLAN.cutoffs, E})
    return shop


def _name(tag: str) -> str:
    return f"ltv_{tag}_{uuid.uuid4().hex[:6]}"


def _train(shop, model_name: str, *, worse: bool = False):
    """The default configuration, or one that is worse on every metric: demographics only, barely trained."""
    from ltvfeed.training.fit import TrainConfig
    from ltvfeed.training.ltv_data import ltv_feature_schema
    from ltvfeed.training.ltv_run import LtvRunConfig, train_ltv

    config = LtvRunConfig(model_name=model_name)
    if worse:
        keep = {"country", "gender", "age"}
        config = LtvRunConfig(
            train=TrainConfig(max_epochs=1, learning_rate=1e-5, hidden=(4,)),
            exclude_features=tuple(c for c in ltv_feature_schema().columns if c not in keep),
            model_name=model_name,
        )
    return train_ltv(shop, PLAN, config, prepare=False)


@pytest.mark.integration
def test_first_run_registers_champion_with_metrics(prepared):
    from mlflow.models import get_model_info

    from ltvfeed.training.ltv_data import ltv_feature_schema
    from ltvfeed.training.registry import CHAMPION, DECISION_TAG, current_champion

    shop, name = prepared, _name("first")
    first_run = _train(shop, name)
    assert first_run.version == "1" and first_run.promoted, first_run.reason
    assert current_champion(shop, name) == "1"
    client = _client(shop)
    assert client.get_model_version(name, "1").tags[DECISION_TAG] == "promoted"
    assert str(client.get_registered_model(name).aliases[CHAMPION]) == "1"

    run = client.get_run(first_run.run_id)
    params, metrics = run.data.params, run.data.metrics
    assert params["horizon_days"] == str(H) and params["holdout_cutoff"] == str(E - timedelta(days=H))
    assert params["train_cutoffs"] == ",".join(c.isoformat() for c in PLAN.train_cutoffs)
    assert params["train.seed"] == "0" and int(params["n_train_rows"]) > 0
    gated = ("normalized_gini", "spearman", "decile_mape", "auc_buys_again", "top_decile_capture")
    for metric in (*gated, "vwde", "total_error", "decile_mape_valued"):
        assert metric in metrics
        assert f"baseline.naive.{metric}" in metrics and f"baseline.bgnbd_gamma_gamma.{metric}" in metrics
    assert metrics["normalized_gini"] == pytest.approx(first_run.metrics.loc["ziln", "normalized_gini"])
    assert metrics["vwde"] == pytest.approx(first_run.metrics.loc["ziln", "vwde"])
    assert metrics["vwde"] >= abs(metrics["total_error"])  # the decile gaps add up to at least the total's
    # promoted, so not worse than the best baseline on the gated metrics
    for metric in ("normalized_gini", "spearman"):
        assert metrics[metric] >= max(metrics[f"baseline.{b}.{metric}"] for b in ("naive", "bgnbd_gamma_gamma"))
    assert all(0 <= metrics[k] < 10 for k in ("vwde", "baseline.naive.vwde", "baseline.bgnbd_gamma_gamma.vwde"))
    # The scale decile_mape is read on: what the noise of one future alone gives a perfectly specified model.
    noise = [metrics[f"decile_mape_noise_{k}"] for k in ("p05", "median", "p95")]
    assert 0 < noise[0] <= noise[1] <= noise[2]
    assert 0 < metrics["normalized_gini"] <= 1
    charts = {a.path for a in client.list_artifacts(first_run.run_id, "evaluation")}
    assert {f"evaluation/{n}" for n in ("gain_chart.png", "decile_chart.png", "calibration.png")} <= charts

    info = get_model_info(first_run.model_uri)
    assert info.signature.inputs.input_names() == ltv_feature_schema().columns
    assert info.signature.outputs.input_names() == ["prob_return", "expected_ltv", "p10", "p50", "p90"]
    assert info.saved_input_example_info is not None
    # the holdout is the plan's later cutoff: every customer of that snapshot with a complete label
    (n_holdout,) = _rows(
        shop.warehouse_dsn,
        "select count(*) from marts.ltv_labels where cutoff = %s and horizon_days = %s and is_complete",
        PLAN.holdout_cutoff,
        H,
    )[0]
    assert f":n={n_holdout}:" in first_run.holdout_id


@pytest.mark.integration
def test_same_run_again_is_reproducible_and_refused(prepared):
    from ltvfeed.training.registry import DECISION_TAG, REASON_TAG, current_champion

    shop, name = prepared, _name("again")
    first_run = _train(shop, name)
    again = _train(shop, name)
    pd.testing.assert_frame_equal(again.metrics, first_run.metrics)  # same data, config and seed
    assert again.holdout_id == first_run.holdout_id
    assert (first_run.version, again.version) == ("1", "2")
    assert not again.promoted and "gain too small" in again.reason
    assert current_champion(shop, name) == "1"
    client = _client(shop)
    tags = client.get_model_version(name, again.version).tags
    assert tags[DECISION_TAG] == "refused" and tags[REASON_TAG] == again.reason
    assert client.get_run(again.run_id).data.tags[f"{name}.promotion.reason"] == again.reason


@pytest.mark.integration
def test_worse_configuration_is_refused(prepared):
    from ltvfeed.training.registry import current_champion

    shop, name = prepared, _name("worse")
    first_run = _train(shop, name)
    worse = _train(shop, name, worse=True)
    assert not worse.promoted
    champion_gini = first_run.metrics.loc["ziln", "normalized_gini"]
    assert "gain too small" in worse.reason and f"vs champion {champion_gini:.4f}" in worse.reason
    assert worse.metrics.loc["ziln", "normalized_gini"] < first_run.metrics.loc["ziln", "normalized_gini"] - 0.05
    assert current_champion(shop, name) == "1"
    tags = _client(shop).get_run(worse.run_id).data.tags
    assert tags[f"{name}.promotion.decision"] == "refused" and "gain too small" in tags[f"{name}.promotion.reason"]


@pytest.mark.integration
def test_a_first_version_worse_than_the_baselines_never_becomes_champion(prepared):
    from ltvfeed.training.registry import current_champion

    shop, name = prepared, _name("firstworse")
    worse = _train(shop, name, worse=True)
    assert worse.version == "1" and not worse.promoted
    assert worse.reason.startswith("refused: worse than a baseline on the holdout (normalized_gini ")
    assert current_champion(shop, name) is None


def _predictions(shop, version: str, model_name: str) -> pd.DataFrame:
    rows = _rows(
        shop.warehouse_dsn,
        "select user_id, expected_ltv, prob_return, p10, p50, p90, revision from marts.user_ltv_predictions "
        "where as_of = %s and model_version = %s and model_name = %s order by user_id",
        E,
        version,
        model_name,
    )
    return pd.DataFrame(rows, columns=["user_id", "expected_ltv", "prob_return", "p10", "p50", "p90", "revision"])


def _newest_revision(shop) -> int:
    (newest,) = _rows(shop.warehouse_dsn, "select max(revision) from marts.user_ltv_predictions where as_of = %s", E)[0]
    return -1 if newest is None else int(newest)


@pytest.mark.integration
def test_batch_scoring_table_online_and_hand_promotion(prepared):
    from ltvfeed.features import feature_store, online_user_features
    from ltvfeed.training.ltv_scoring import materialize_predictions, score_snapshot

    shop, name = prepared, _name("score")
    assert _train(shop, name).promoted
    assert not _train(shop, name, worse=True).promoted  # v2, strictly worse: refused
    (customers,) = _rows(shop.warehouse_dsn, "select count(*) from marts.user_features where as_of = %s", E)[0]
    before = _newest_revision(shop)
    result = score_snapshot(shop, model_name=name)  # the newest snapshot, with the champion
    assert (result.as_of, result.version, result.rows, result.revision) == (E, "1", customers, before + 1)
    v1 = _predictions(shop, "1", name)
    assert len(v1) == customers and np.isfinite(v1.drop(columns="user_id").to_numpy()).all()
    assert (v1["p10"] <= v1["p50"]).all() and (v1["p50"] <= v1["p90"]).all() and (v1["expected_ltv"] >= 0).all()
    assert score_snapshot(shop, E, model_name=name).revision == before + 1  # idempotent: replaced, not doubled
    assert len(_predictions(shop, "1", name)) == customers

    materialize_predictions(shop, E)
    store = feature_store(shop)
    some = list(v1["user_id"].iloc[::97])
    online = online_user_features(shop, some, service="ltv_scores", store=store).set_index("user_id")
    expected = v1.set_index("user_id").loc[some]
    assert np.allclose(online["expected_ltv"], expected["expected_ltv"]) and set(online["model_version"]) == {"1"}
    ranking = online_user_features(shop, some, service="user_profile", store=store).set_index("user_id")
    assert np.allclose(ranking["prob_return"], expected["prob_return"])

    # someone moves the champion alias by hand (what the MLflow UI does): scoring follows it, online too
    _client(shop).set_registered_model_alias(name, "champion", "2")
    moved = score_snapshot(shop, E, model_name=name)
    assert (moved.version, moved.revision) == ("2", before + 2)
    v2 = _predictions(shop, "2", name)
    assert len(v2) == customers and not np.allclose(v2["expected_ltv"], v1["expected_ltv"])
    assert len(_predictions(shop, "1", name)) == customers  # v1's scoring of the snapshot is kept (history)
    materialize_predictions(shop, E)
    online = online_user_features(shop, some, service="ltv_scores", store=store).set_index("user_id")
    assert np.allclose(online["expected_ltv"], v2.set_index("user_id").loc[some, "expected_ltv"])
    assert set(online["model_version"]) == {"2"}


@pytest.mark.integration
def test_retrain_dag_end_to_end(prepared):
    """One `airflow dags test` run of ltv_retrain for as_of E (minutes: Airflow's metadata DB, every task). No other
    test registers model `ltv` in this shop: the DAG's model is its first version and becomes champion."""
    from ltvfeed.orchestration.airflow_cli import test_dag
    from ltvfeed.training.registry import DECISION_TAG, current_champion, list_versions

    shop = prepared
    assert current_champion(shop, "ltv") is None
    test_dag(shop, "ltv_retrain", E, conf={"horizon_days": H, "train_cutoffs": 2})
    (only,) = list_versions(shop, "ltv")
    assert only.version == "1" and only.holdout_id.startswith(f"ltv:h{H}:holdout={PLAN.holdout_cutoff}:")
    assert _client(shop).get_model_version("ltv", "1").tags[DECISION_TAG] == "promoted"
    assert current_champion(shop, "ltv") == "1"
    scored = _predictions(shop, "1", "ltv")  # the snapshot was scored by the new champion
    (customers,) = _rows(shop.warehouse_dsn, "select count(*) from marts.user_features where as_of = %s", E)[0]
    assert len(scored) == customers and math.isfinite(float(scored["expected_ltv"].sum()))
    assert (scored["revision"] == _newest_revision(shop)).all()
    from ltvfeed.features import online_user_features

    online = online_user_features(shop, list(scored["user_id"].iloc[:5]), service="ltv_scores")
    assert set(online["model_version"]) == {"1"}

"""LTV training runs, promotion, batch scoring and the ltv_retrain DAG on the real servers.

One small simulated shop (module-scoped, with its own warehouse, MLflow database, state dir and Redis project):
the first run builds the missing snapshots with dbt and registers `ltv` v1 as champion with its metrics, charts
and signature; the same run again reproduces v1's metrics exactly and is refused (no gain); a deliberately worse
configuration is refused with the reason recorded; batch scoring writes the predictions table and the online
store (Feast), and a champion moved by hand is used by the next scoring, online too; finally `airflow dags test
ltv_retrain` runs the whole DAG once. The plans and rules without servers are in tests/unit/test_ltv_run.py."""

from __future__ import annotations

import math
import uuid
from datetime import date, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest

from ltvfeed.training.ltv_data import plan_for_as_of

E = date(2026, 3, 1)  # the simulated shop's end: the scoring snapshot
H = 45
N_USERS = 800


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

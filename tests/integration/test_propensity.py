"""The purchase-propensity model on the real servers: a tiny simulated shop goes through ingest and dbt for two
cutoffs (one module-scoped setup), then ``train_propensity`` trains, evaluates out of time, logs to a fresh
MLflow database and is judged against the baselines and the cold-start floor; ``load_propensity`` returns a
scorer whose scores match the logged pyfunc model; the CLI retrain and the DAG run end to end. The model itself
is tested in tests/unit/test_propensity.py."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd
import psycopg
import pytest

from ltvfeed.errors import UserError
from ltvfeed.frames.inputs import Catalogue
from ltvfeed.training.propensity.config import PropensityConfig
from tests.unit import test_propensity as unit_half

shop = unit_half.shop  # the unit half's fixtures, requested by name


# ------------------------------------------------------------------------------------ integration: the stack

END = date(2026, 6, 1)  # the simulated data ends here (exclusive)
T1 = date(2026, 4, 2)  # training cutoff: purchases in [T1, T1 + 30d)
T2 = date(2026, 5, 2)  # evaluation cutoff: purchases in [T2, END)
HORIZON = 30


def insert_standin_ltv(dsn: str, snapshots: tuple[date, ...]) -> None:
    """What LTV batch scoring writes (model ltv, version 1), with simple stand-in predictions."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            """
            insert into marts.user_ltv_predictions (user_id, as_of, horizon_days, model_name, model_version,
                prob_return, expected_ltv, p10, p50, p90, feature_timestamp)
            select user_id, as_of, 90, 'ltv', '1', least(frequency / 3.0, 1.0), monetary_avg * frequency,
                0, 0, 0, feature_timestamp
            from marts.user_features where as_of = any(%s)
            """,
            (list(snapshots),),
        )


@pytest.fixture(scope="module")
def shop_stack(stack, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A tiny simulated shop in this module's own warehouse (dbt snapshots T1 and T2, Feast definitions
    applied, LTV predictions for both snapshots) and its own fresh MLflow database."""
    from ltvfeed.db import drop_database, ensure_database
    from ltvfeed.dbt_runner import build
    from ltvfeed.features import apply, clear_online
    from ltvfeed.ingest import import_directory
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory
    from ltvfeed.warehouse import ensure_warehouse

    suffix = uuid.uuid4().hex[:6]
    warehouse = f"ltvfeed_test_{run_id}_prop_{suffix}"
    mlflow_db = f"ltvfeed_test_{run_id}_prop_{suffix}_mlflow"
    tmp = tmp_path_factory.mktemp("propensity")
    dsn = ensure_warehouse(stack.pg_dsn, warehouse)
    ensure_database(stack.pg_dsn, mlflow_db)
    settings = stack.settings.model_copy(
        update={
            "warehouse_db": warehouse,
            "mlflow_db": mlflow_db,
            "redis_prefix": f"{stack.settings.redis_prefix}prop_{suffix}:",
            "state_dir": tmp / "state",
            "pg_dsn": stack.pg_dsn,  # what settings-taking tasks (begin_generation) start: these servers
            "redis_url": stack.redis_url,
        }
    )
    s = dataclasses.replace(stack, settings=settings)
    timings: dict[str, float] = {}
    try:
        start = time.perf_counter()
        # registry mechanics need a first champion: a shop where the served model clears the baseline floor
        # (500 users left 43 buyers to learn from: it tied with buy-again); the floor itself is tested below
        config = SimulationConfig(n_users=1500, n_items=60, days=150, seed=11, end_date=END, horizons=(HORIZON,))
        simulate_to_directory(config, tmp / "shop", progress=False)
        import_directory(dsn, tmp / "shop")
        timings["simulate + import"] = round(time.perf_counter() - start, 1)
        for as_of in (T1, T2):
            start = time.perf_counter()
            # every source Feast apply checks (user_recent_purchases: the API's freshness view)
            select = "+user_features +item_performance +user_recent_purchases"
            build(s, as_of, None, select, target_path=tmp / "dbt_target")
            timings[f"dbt build {as_of}"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        apply(s)
        timings["feast apply"] = round(time.perf_counter() - start, 1)
        insert_standin_ltv(dsn, (T1, T2))
        yield s
    finally:
        print("\npropensity shop timings (s):", timings)
        try:
            clear_online(s)
        finally:
            drop_database(stack.pg_dsn, warehouse)
            drop_database(stack.pg_dsn, mlflow_db)


INTEGRATION_CFG = PropensityConfig(max_epochs=20, patience=3, seed=1)
SERVED_MARGIN = 1.1  # how much better than the best baseline the first champion's served NDCG@10 must be


@pytest.fixture(scope="module")
def trained_v1(shop_stack):
    from ltvfeed.training.propensity import train_propensity

    start = time.perf_counter()
    result = train_propensity(shop_stack, T1, T2, HORIZON, INTEGRATION_CFG)
    print(f"\ntrain_propensity: {time.perf_counter() - start:.1f} s\n{result.metrics.to_string()}")
    return result


@pytest.fixture(scope="module")
def champion_v1(shop_stack, trained_v1):
    """Version 1 made champion by hand, past the floor that refused it (see the test below): the registry
    mechanics that follow need a champion, and a person may promote one that way."""
    from ltvfeed.training.registry import promote

    promote(shop_stack, "purchase_propensity", trained_v1.version, "test: champion by hand past the cold_start floor")
    return trained_v1


@pytest.mark.integration
def test_training_run_registers_the_first_version_and_the_cold_start_floor_refuses_it(shop_stack, trained_v1) -> None:
    """This shop's first version beats the simple baselines with a margin, but not what is served without a
    model (the cold-start row), so the floor refuses it although no champion exists. Before the cold-start row
    this test asserted it promoted; measured on this shop: served NDCG@10 0.384, cold_start 0.404, best simple
    baseline buy_again 0.315 (x1.22). The promoted path of the gate is tested on metric tables
    (test_baseline_veto_*) and by the registry's own tests (test_registry.py::test_first_version_becomes_champion);
    no training run on a test shop clears the cold-start row yet."""
    result = trained_v1
    assert result.version == "1" and not result.promoted, result.reason
    assert "loses to the cold_start baseline" in result.reason, result.reason
    assert result.eval_window_complete and result.holdout_id == f"purchases {T2.isoformat()} +{HORIZON}d"
    table = result.metrics
    assert list(table.index) == ["model", "two_tower", "popularity", "classic", "buy_again", "cold_start"]
    simple = table.loc[["popularity", "classic", "buy_again"], "ndcg_at_10"]
    # the simple floor held, by what is served, with a margin (issue 13: headline claims asserted with one); x1.1
    # leaves room for noise but not for a tie
    assert table.loc["model", "ndcg_at_10"] >= SERVED_MARGIN * simple.max(), table
    assert table.loc["cold_start", "ndcg_at_10"] > table.loc["model", "ndcg_at_10"], table
    assert list(table.columns) == ["auc", "ndcg_at_10", "recall_at_10"]
    assert np.isfinite(table.to_numpy()).all() and ((table >= 0) & (table <= 1)).all().all()
    # what the registry measured on the logged model is what the run measured on the trained one
    assert result.registry_metrics == pytest.approx(table.loc["model"].to_dict(), abs=1e-9)

    import mlflow

    from ltvfeed.infra.tracking import configure_mlflow

    client = configure_mlflow(shop_stack)
    run = client.get_run(result.run_id)
    assert run.data.params["cutoff"] == T1.isoformat() and run.data.params["eval_cutoff"] == T2.isoformat()
    assert "predictions for" in run.data.params["ltv_features"]  # the stand-in LTV scores were used
    logged = ("auc", "ndcg_at_10", "recall_at_10", "popularity.ndcg_at_10", "classic.auc", "cold_start.ndcg_at_10")
    for name in (*logged, "best_epoch"):
        assert name in run.data.metrics, name
    info = mlflow.models.get_model_info(result.model_uri)
    assert info.signature.inputs.input_names() == ["user_id", "item_id"]
    assert info.saved_input_example_info is not None


@pytest.mark.integration
def test_a_first_version_that_loses_to_a_baseline_is_never_champion(shop_stack) -> None:
    """Untrained (learning rate 0: random embeddings), in a registry of its own: strictly worse than the
    baselines, so refused although no champion exists."""
    from ltvfeed.db import drop_database, ensure_database
    from ltvfeed.training.propensity import train_propensity
    from ltvfeed.training.registry import current_champion

    mlflow_db = f"{shop_stack.settings.mlflow_db}_floor"
    ensure_database(shop_stack.pg_dsn, mlflow_db)
    s = dataclasses.replace(shop_stack, settings=shop_stack.settings.model_copy(update={"mlflow_db": mlflow_db}))
    try:
        untrained = dataclasses.replace(INTEGRATION_CFG, learning_rate=0.0, max_epochs=1)
        result = train_propensity(s, T1, T2, HORIZON, untrained)
        best = result.metrics.drop(index=["model", "two_tower"])["ndcg_at_10"].max()
        assert result.metrics.loc["model", "ndcg_at_10"] < best
        assert result.version == "1" and not result.promoted, result.reason
        assert "loses to the" in result.reason and "baseline" in result.reason
        assert current_champion(s, "purchase_propensity") is None
    finally:
        drop_database(shop_stack.pg_dsn, mlflow_db)


@pytest.mark.integration
def test_a_generation_records_the_ltv_version_its_propensity_model_reads(shop_stack, champion_v1) -> None:
    """Feed metadata names every model behind a feed: the propensity champion and the LTV scoring it reads
    (the champion served: no baseline fallback, which the next test covers)."""
    from ltvfeed.orchestration.feed_tasks import begin_generation, discard_if_uncommitted
    from ltvfeed.serving.generation import GenerationParams
    from ltvfeed.training.propensity.registry import ltv_model_read_by

    params = GenerationParams(as_of=T2, shards=1, baseline_fallback=False)
    assert ltv_model_read_by(shop_stack, champion_v1.version) == "ltv"
    plan = begin_generation(shop_stack.settings, params, origin="test")
    try:
        assert plan["model_versions"] == {"purchase_propensity": champion_v1.version, "ltv": "1"}
    finally:
        discard_if_uncommitted(shop_stack.settings, plan)
    with psycopg.connect(shop_stack.warehouse_dsn) as conn:  # a snapshot nobody scored: no LTV version to name
        conn.execute("delete from marts.user_ltv_predictions where as_of = %s", (T2,))
    try:
        plan = begin_generation(shop_stack.settings, params, origin="test")
        assert plan["model_versions"] == {"purchase_propensity": champion_v1.version}
        discard_if_uncommitted(shop_stack.settings, plan)
    finally:
        insert_standin_ltv(shop_stack.warehouse_dsn, (T2,))


@pytest.mark.integration
def test_a_champion_that_lost_to_cold_start_is_not_served(shop_stack, champion_v1) -> None:
    """The champion (by hand) lost to the cold-start row on its evaluation: a generation serves the cold-start
    source instead, for every user, and its metadata says so (the floor names the refused version)."""
    from ltvfeed.orchestration.feed_tasks import begin_generation, discard_if_uncommitted, feed_store
    from ltvfeed.serving.generation import GenerationParams
    from ltvfeed.serving.propensity_sources import CategoryAffinitySource

    plan = begin_generation(shop_stack.settings, GenerationParams(as_of=T2, shards=1), origin="test")
    try:
        assert plan["model_versions"] == CategoryAffinitySource().model_versions()
        assert plan["params"]["propensity_source"] == "category_affinity" and plan["params"]["fallback"] is None
        meta = feed_store(shop_stack).generation_meta(plan["generation"])
        floor = meta.extra["baseline_floor"]
        assert floor["fallback"] == "cold_start" and floor["version"] == champion_v1.version
        assert set(floor["baselines"]) == {"popularity", "classic", "buy_again", "cold_start"}
        assert floor["baselines"]["cold_start"] == pytest.approx(champion_v1.metrics.loc["cold_start", "ndcg_at_10"])
        assert meta.extra["propensity_source"] == "category_affinity"
    finally:
        discard_if_uncommitted(shop_stack.settings, plan)


@pytest.mark.integration
def test_loaded_champion_scores_like_the_logged_model(shop_stack, champion_v1) -> None:
    import mlflow

    from ltvfeed.training.propensity import load_propensity
    from ltvfeed.training.propensity.data import load_items

    scorer = load_propensity(shop_stack)
    assert scorer.version == "1" and scorer.tables_as_of == T2
    assert any(c.startswith("ltv_") for c in scorer.network.user_encoder.columns)
    with psycopg.connect(shop_stack.warehouse_dsn) as conn:
        n_users = conn.execute("select count(*) from marts.user_features where as_of = %s", (T2,)).fetchone()[0]
    assert len(scorer.user_ids) == n_users and scorer.user_embeddings.shape[0] == n_users

    logged = mlflow.pyfunc.load_model("models:/purchase_propensity@champion")
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame(
        {
            "user_id": [*rng.choice(scorer.user_ids, 20), "cold-user", scorer.user_ids[0]],
            "item_id": [*rng.choice(scorer.item_ids, 20), scorer.item_ids[0], "new-item"],
        }
    )
    want = np.asarray(logged.predict(pairs))
    got = scorer.score_pairs(pairs["user_id"], pairs["item_id"])
    assert np.array_equal(got, want)
    assert np.isfinite(got).all() and ((got > 0) & (got < 1)).all()

    # the serving side: catalogue rows and cold users
    catalogue = Catalogue.from_frame(load_items(shop_stack.warehouse_dsn, T2, 90))
    propensity = scorer.for_catalogue(catalogue)
    users = scorer.user_index([scorer.user_ids[1], "cold-user"])
    assert users.tolist() == [1, -1]
    p = propensity(users, np.tile(np.arange(catalogue.n_items), (2, 1)))
    assert p.shape == (2, catalogue.n_items) and np.isfinite(p).all()

    # the same model over another snapshot: T1's customers
    older = load_propensity(shop_stack, as_of=T1)
    with psycopg.connect(shop_stack.warehouse_dsn) as conn:
        n_t1 = conn.execute("select count(*) from marts.user_features where as_of = %s", (T1,)).fetchone()[0]
    assert older.version == "1" and older.tables_as_of == T1 and len(older.user_ids) == n_t1 < n_users

    with pytest.raises(UserError, match="purchase_propensity@nobody"):  # an alias no version holds
        load_propensity(shop_stack, alias="nobody")


@pytest.mark.integration
def test_cli_retrain_is_judged_against_the_champion(shop_stack, champion_v1, monkeypatch) -> None:
    """The same training again (user features read from the mart instead of Feast: the same values) gives the
    same metrics on the same holdout: no gain, so the new version stays challenger."""
    from typer.testing import CliRunner

    from ltvfeed.cli import app
    from ltvfeed.settings import get_settings
    from ltvfeed.training.registry import current_champion, list_versions

    for key, value in shop_stack.env().items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    new = str(
        1 + max(int(v.version) for v in list_versions(shop_stack, "purchase_propensity"))
    )  # tests run in any order
    try:
        args = ["propensity", "train", "--cutoff", T1.isoformat(), "--eval-cutoff", T2.isoformat()]
        args += ["--seed", "1", "--max-epochs", "20", "--patience", "3", "--user-features", "marts"]
        out = CliRunner().invoke(app, args)
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    assert "ndcg_at_10" in out.output and "popularity" in out.output and "classic" in out.output
    assert f"purchase_propensity v{new}: not promoted" in out.output, out.output
    assert current_champion(shop_stack, "purchase_propensity") == "1"
    versions = {v.version: v for v in list_versions(shop_stack, "purchase_propensity")}
    assert versions[new].aliases == ("challenger",) and versions[new].decision == "refused"
    assert versions[new].metrics == pytest.approx(versions["1"].metrics, abs=1e-9)

    bad = CliRunner().invoke(app, ["propensity", "train", "--cutoff", T1.isoformat(), "--eval-cutoff", "2026-04-20"])
    assert isinstance(bad.exception, UserError) and "at least 30 days after" in str(bad.exception)


@pytest.mark.integration
def test_propensity_retrain_dag_end_to_end(shop_stack, champion_v1) -> None:
    """One `airflow dags test propensity_retrain` run for END: cutoffs END - 60 d / END - 30 d (T1 / T2), a new
    registered version judged against the champion, and the model asset published with the run's as_of."""
    import json
    import sqlite3

    from ltvfeed.dbt_runner import parse
    from ltvfeed.orchestration.airflow_cli import test_dag
    from ltvfeed.orchestration.assets import PROPENSITY_MODEL_ASSET_URI
    from ltvfeed.training.registry import current_champion, list_versions

    parse(shop_stack.env())  # ltv_pipeline, in the same DAG folder, renders its dbt graph from the manifest
    before = {v.version for v in list_versions(shop_stack, "purchase_propensity")}
    champion = current_champion(shop_stack, "purchase_propensity")
    # learning rate 0: an untrained challenger, strictly worse than the baselines and the champion
    test_dag(shop_stack, "propensity_retrain", END, conf={"max_epochs": 2, "learning_rate": 0.0})
    versions = {v.version: v for v in list_versions(shop_stack, "purchase_propensity")}
    (new,) = set(versions) - before
    assert versions[new].decision == "refused"
    assert current_champion(shop_stack, "purchase_propensity") == champion
    assert current_champion(shop_stack, "purchase_propensity") is not None
    from ltvfeed.infra.tracking import configure_mlflow

    client = configure_mlflow(shop_stack)
    params = client.get_run(client.get_model_version("purchase_propensity", new).run_id).data.params
    assert (params["cutoff"], params["eval_cutoff"], params["horizon_days"]) == (T1.isoformat(), T2.isoformat(), "30")
    with sqlite3.connect(shop_stack.airflow_home / "airflow.db") as db:
        extras = db.execute(
            "select e.extra from asset_event e join asset a on a.id = e.asset_id where a.uri = ?",
            (PROPENSITY_MODEL_ASSET_URI,),
        ).fetchall()
    assert extras and json.loads(extras[-1][0]) == {"as_of": END.isoformat()}

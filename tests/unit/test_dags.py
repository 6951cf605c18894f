"""The DAG folder imports with zero errors and wires the pipeline as documented."""

from __future__ import annotations

import pytest

from ltvfeed.settings import project_root


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    import os

    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    # the manifest Cosmos reads lives under the state dir: a temporary one, never the checkout's .ltvfeed
    os.environ.setdefault("LTVFEED_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] = "False"
    from ltvfeed.dbt_runner import parse

    parse()  # Cosmos renders the dbt graph from the manifest
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(project_root() / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "ltv_pipeline" in dagbag.dags


def test_ltv_pipeline_shape(dagbag):
    dag = dagbag.dags["ltv_pipeline"]
    ids = set(dag.task_ids)
    assert {"resolve_as_of", "ingest", "expectations_raw", "expectations_marts", "apply_features"} <= ids
    assert dag.get_task("materialize_features").upstream_task_ids == {"apply_features", "resolve_as_of"}
    assert "expectations_marts" in dag.get_task("apply_features").upstream_task_ids
    model_tasks = {t for t in ids if t.startswith("dbt.")}
    # one task (group) per model: every mart is in the graph
    for mart in ("user_features", "item_performance", "user_category_propensity", "ltv_labels"):
        assert any(mart in t for t in model_tasks), mart
    # order: ingest -> raw gate -> the warehouse lease -> dbt -> marts gate; the lease given back after all of dbt
    raw_gate = dag.get_task("expectations_raw")
    assert dag.get_task("ingest").task_id in raw_gate.upstream_task_ids
    marts_gate = dag.get_task("expectations_marts")
    assert any(t.startswith("dbt.") for t in marts_gate.upstream_task_ids)
    assert raw_gate.downstream_task_ids == {"take_warehouse"}
    take = dag.get_task("take_warehouse")
    assert take.mode == "reschedule" and take.downstream_task_ids
    # one `dbt build` (Cosmos' watcher producer) right after the lease; every model's task and its tests' task
    # start once it is done, whatever it did, so `airflow dags test` (one task at a time) never waits on a build
    # that has not started
    assert take.downstream_task_ids == {"dbt.dbt_producer_watcher"}
    producer = dag.get_task("dbt.dbt_producer_watcher")
    for mart in ("user_features", "ltv_labels", "stg_orders"):
        assert {f"dbt.{mart}.run", f"dbt.{mart}.test"} <= model_tasks, mart
    roots = {t for t in model_tasks if not dag.get_task(t).upstream_task_ids & model_tasks}
    assert roots == {"dbt.dbt_producer_watcher"}
    assert producer.downstream_task_ids >= {f"dbt.stg_{name}.run" for name in ("orders", "events", "users")}
    assert {dag.get_task(t).trigger_rule for t in producer.downstream_task_ids - {"dbt.dbt_producer_watcher_done"}} == {
        "one_done"
    }
    release = dag.get_task("release_warehouse")
    assert release.trigger_rule == "all_done" and "expectations_marts" in release.upstream_task_ids
    assert release.upstream_task_ids >= {
        t for t in model_tasks if not dag.get_task(t).downstream_task_ids - {"expectations_marts", "release_warehouse"}
    }  # every last dbt task
    assert dag.params["horizon_days"] == 365
    assert dag.doc_md and "ltv_pipeline" in dag.doc_md
    assert [o.uri for o in marts_gate.outlets] == ["ltvfeed://warehouse/marts"]


def test_experiment_report_shape(dagbag):
    dag = dagbag.dags["experiment_report"]
    assert set(dag.task_ids) == {"running", "build_metrics", "report"}
    assert dag.get_task("report").upstream_task_ids == {"running", "build_metrics"}
    assert dag.get_task("build_metrics").upstream_task_ids == {"running"}

"""The dbt project as an Airflow task group through astronomer-cosmos, in its watcher mode: one ``dbt build``
(the producer task) builds every model and runs every test, with dbt's own threads, and one task per model and
per model's tests reports that node's outcome in the Airflow UI.

Cosmos' default mode starts dbt once per model (32 tasks, ~1.3 s of dbt start-up each, about half of a task); the
watcher mode starts it once per run. A failed test still stops what depends on it: ``dbt build`` skips the
models downstream of a failed test, and their tasks fail."""

from __future__ import annotations

import sys
from pathlib import Path

from ltvfeed.dbt_runner import dbt_project_dir, manifest_path
from ltvfeed.orchestration.assets import MARTS_ASSET_URI

__all__ = ["MARTS_ASSET_URI", "warehouse_task_group"]


def warehouse_task_group(group_id: str, dbt_vars: dict[str, str]):
    """A Cosmos ``DbtTaskGroup`` over dbt/; ``dbt_vars`` values may be Jinja templates (rendered per run).

    The profile reads LTVFEED_DBT_* from the environment (see ``Stack.env``), so the same project runs against
    embedded or configured PostgreSQL. The graph is read from ``<state_dir>/dbt/target/manifest.json`` when
    present (written by ``ltvfeed dbt parse``), else from ``dbt ls``. Cosmos runs dbt in a temporary copy of
    the project, so nothing is written into dbt/; its cache lives under the state dir too
    (``AIRFLOW__COSMOS__CACHE_DIR``, see ``Stack.env``).
    """
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior, TestIndirectSelection

    project = dbt_project_dir()
    manifest = manifest_path()
    group = DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            dbt_project_path=project,
            manifest_path=manifest if manifest.exists() else None,
            install_dbt_deps=False,
        ),
        profile_config=ProfileConfig(
            profile_name="ltvfeed", target_name="warehouse", profiles_yml_filepath=project / "profiles.yml"
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER,
            dbt_executable_path=str(Path(sys.executable).parent / "dbt"),
            # dbt in a process of its own, whose JSON log lines the producer reads: in-process (dbtRunner), Cosmos
            # turns every dbt event into JSON inside dbt's threads, and the build took 29 s instead of 10
            invocation_mode=InvocationMode.SUBPROCESS,
            test_indirect_selection=TestIndirectSelection.BUILDABLE,  # same as dbt_project.yml's flag
        ),
        render_config=RenderConfig(
            load_method=LoadMode.AUTOMATIC,
            test_behavior=TestBehavior.AFTER_EACH,  # a task per model, then one for its tests
            # a test spanning two models counts in both models' test tasks: Cosmos' producer reports no outcome
            # for a test detached into its own task, which then defers and races the scheduler (task failed)
            should_detach_multiple_parents_tests=False,
            emit_datasets=False,
        ),
        operator_args={"vars": dbt_vars, "install_deps": False},
    )
    _report_after_build(group)
    return group


def _report_after_build(group) -> None:
    """Start the per-node tasks once the producer's ``dbt build`` is done (success or failure).

    Cosmos lets them start beside the build and wait on the triggerer; ``airflow dags test`` (``ltvfeed pipeline
    run``) runs one task at a time, so a node task that started first would wait forever on a build that never
    starts. After the build every node's outcome is known: each task reads it at once, with no deferral. On a
    failed build the tasks still run and show which node failed (a node the build never reached is run by its
    own task, Cosmos' fallback); a producer that never ran (its upstream failed) skips them.
    """
    from airflow.task.trigger_rule import TriggerRule
    from cosmos.constants import PRODUCER_WATCHER_TASK_ID

    producer = group.children[f"{group.group_id}.{PRODUCER_WATCHER_TASK_ID}"]
    for task in [task for task in group.get_roots() if task is not producer]:
        task.trigger_rule = TriggerRule.ONE_DONE
        producer >> task

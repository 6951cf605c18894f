"""The dbt project as an Airflow task group through astronomer-cosmos: one task per model (`dbt build`: the
model, then its tests, so a failed test stops what depends on it), and one per test spanning two models."""

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
    present (written by ``ltvfeed dbt parse``), else from ``dbt ls``. Cosmos runs each task's dbt in a temporary
    copy of the project, so nothing is written into dbt/; its cache lives under the state dir too
    (``AIRFLOW__COSMOS__CACHE_DIR``, see ``Stack.env``).
    """
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import InvocationMode, LoadMode, TestBehavior, TestIndirectSelection

    project = dbt_project_dir()
    manifest = manifest_path()
    return DbtTaskGroup(
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
            dbt_executable_path=str(Path(sys.executable).parent / "dbt"),
            invocation_mode=InvocationMode.DBT_RUNNER,
            test_indirect_selection=TestIndirectSelection.BUILDABLE,  # same as dbt_project.yml's flag
        ),
        render_config=RenderConfig(
            load_method=LoadMode.AUTOMATIC,
            test_behavior=TestBehavior.BUILD,  # one `dbt build` per model: the model, then its tests
            # tests spanning two models (e.g. order_items -> orders) become their own tasks after both parents
            should_detach_multiple_parents_tests=True,
            emit_datasets=False,
        ),
        operator_args={"vars": dbt_vars, "install_deps": False},
    )

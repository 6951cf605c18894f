"""
### ltv_pipeline

Daily warehouse refresh for one cutoff date (`as_of`):

1. **ingest** every file waiting in the landing folder (`$LTVFEED_STATE_DIR/landing/<entity>/`) into `raw.*`
   (idempotent per file; bad rows go to `ops.quarantine`);
2. **expectations_raw**: Great Expectations gate on the raw tables — a failure stops the run;
3. **take_warehouse** waits until no other run builds the warehouse (a backfill runs beside a triggered run:
   the staging views and intermediates are shared by every cutoff), **dbt**: staging → intermediate → marts in
   one `dbt build` (astronomer-cosmos' watcher mode: the `dbt_producer_watcher` task), then a task per model and
   one for its tests showing each node's outcome; a failed dbt test fails its model's tests task and stops the run;
4. **expectations_marts**: gate on the marts; on success the `marts` asset is updated, which later pipelines
   (retraining) are scheduled on; **release_warehouse** then lets the next run build, whatever happened;
5. **apply_features** (`feast apply`) and **materialize_features** (incremental load of the validated snapshot
   into the Redis online store, so apps read fresh features through Feast).

`as_of` is the logical date unless the `as_of` param is given (backfill a past cutoff with
`airflow backfill create --dag-id ltv_pipeline --from-date ... --to-date ...`, or trigger with a param).
Features for `as_of` use only data strictly before it. Data Docs: `$LTVFEED_STATE_DIR/gx/`.
"""

from __future__ import annotations

from airflow.sdk import Asset, Param, PokeReturnValue, dag, get_current_context, task

from ltvfeed.cutoff import DEFAULT_HORIZON_DAYS
from ltvfeed.orchestration.dag_defaults import DAG_DEFAULTS
from ltvfeed.orchestration.dbt_group import MARTS_ASSET_URI, warehouse_task_group
from ltvfeed.warehouse.lease import LEASE_TTL, POLL_S


@dag(
    dag_id="ltv_pipeline",
    schedule="@daily",
    **DAG_DEFAULTS,
    tags=["ltvfeed", "warehouse", "dbt", "great-expectations", "feast"],
    doc_md=__doc__,
    params={
        "as_of": Param(None, type=["null", "string"], format="date", description="Cutoff date; default: logical date"),
        "horizon_days": Param(DEFAULT_HORIZON_DAYS, type="integer", minimum=1, description="LTV label horizon in days"),
    },
    default_args={"retries": 0},
)
def ltv_pipeline():
    @task
    def resolve_as_of() -> str:
        from ltvfeed.orchestration.tasks import run_as_of

        return run_as_of(get_current_context()).isoformat()

    @task
    def ingest() -> dict[str, int]:
        from ltvfeed.orchestration.tasks import ingest_landing
        from ltvfeed.settings import Settings

        return ingest_landing(Settings())

    @task
    def expectations_raw(as_of: str) -> dict[str, object]:
        from ltvfeed.cutoff import parse_as_of
        from ltvfeed.orchestration.tasks import quality_gate
        from ltvfeed.settings import Settings

        return quality_gate(Settings(), "raw", parse_as_of(as_of))

    @task.sensor(poke_interval=POLL_S, timeout=LEASE_TTL.total_seconds(), mode="reschedule")
    def take_warehouse() -> PokeReturnValue:
        from ltvfeed.orchestration.tasks import take_warehouse as take
        from ltvfeed.settings import Settings

        other = take(Settings(), get_current_context())
        return PokeReturnValue(is_done=other is None, xcom_value=other)

    @task(trigger_rule="all_done")
    def release_warehouse() -> bool:
        from ltvfeed.orchestration.tasks import release_warehouse as release
        from ltvfeed.settings import Settings

        return release(Settings(), get_current_context())

    @task(outlets=[Asset(MARTS_ASSET_URI)])
    def expectations_marts(as_of: str) -> dict[str, object]:
        from ltvfeed.cutoff import parse_as_of
        from ltvfeed.orchestration.tasks import quality_gate
        from ltvfeed.settings import Settings

        result = quality_gate(Settings(), "marts", parse_as_of(as_of))
        # consumers scheduled on the asset (retraining, feed generation) take exactly this snapshot
        get_current_context()["outlet_events"][Asset(MARTS_ASSET_URI)].extra = {"as_of": as_of}
        return result

    @task
    def apply_features() -> dict[str, object]:
        from ltvfeed.orchestration.feature_tasks import apply_features as apply
        from ltvfeed.settings import Settings

        return apply(Settings())

    @task
    def materialize_features(as_of: str) -> dict[str, object]:
        from ltvfeed.cutoff import parse_as_of
        from ltvfeed.orchestration.feature_tasks import materialize_features as load
        from ltvfeed.settings import Settings

        return load(Settings(), parse_as_of(as_of))

    as_of = resolve_as_of()
    dbt = warehouse_task_group(
        "dbt",
        {
            "as_of": "{{ ti.xcom_pull(task_ids='resolve_as_of') }}",
            "horizon_days": "{{ params.horizon_days }}",
        },
    )
    gated = as_of >> ingest() >> expectations_raw(as_of) >> take_warehouse() >> dbt >> expectations_marts(as_of)
    [dbt, gated] >> release_warehouse()
    gated >> apply_features() >> materialize_features(as_of)


ltv_pipeline()

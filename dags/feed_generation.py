"""
### feed_generation

Every user's personalised feed for one cutoff (`as_of`), written to Redis as one *generation* and served only
once complete:

1. **resolve_as_of**: the `as_of` param, else the `as_of` carried by the triggering `marts` asset event, else
   the logical date (the run day);
2. **begin**: checks the marts snapshot and the propensity model exist and opens a generation recording model
   versions, weights, config, as_of and generated_at;
3. **generate_shard**: one *mapped* task per shard (dynamic task mapping over `shards`): users are split by a
   stable hash of `user_id`, each shard reads its users' history from the warehouse in chunks of
   `chunk_users`, scores them in vectorised batches and writes their feeds. Shards run in parallel on as many
   workers as there are; a shard is retried on its own (rewriting a shard is idempotent);
4. **write_classic**: the control arm's non-personal feed (same scorer, commercial weight only);
5. **commit**: atomic pointer swap; refused when any shard or the classic feed is missing, so a half-finished
   generation is never served (the previous one stays);
6. **discard_uncommitted**: only when something above failed: deletes the keys of the generation that did not
   commit and fails the run with that message (the previously served generation stays in place).

Runs daily at 03:00 UTC, whenever the `ltvfeed://warehouse/marts` asset is updated (the marts gate of
`ltv_pipeline` passed) and after retraining (asset `ltvfeed://models/purchase_propensity`, published by
`propensity_retrain`). Params: `as_of`, `n` (feed length), `weights` (a preset name: `default`, the best measured
setting, `concept`, the concept's 0.5/0.4/0.1, or `classic`; or `w_c` commercial, `w_p` purchase propensity,
`w_d` diversity, overriding the `preset` they name, `default` if none), `shards`, `K` (candidates per user),
`chunk_users`, `propensity_source`:
`registry` (default: the `purchase_propensity` champion in MLflow; required) or `category_affinity`
(cold start, for a shop without a trained model yet: P(purchase) from category affinity in the marts),
`diversity` (`category_weight`, `view_weight`: how much similarity to recently viewed items lowers a score),
`purchase_scale`: `user_max` (default: P(purchase) relative to the user's likeliest candidate) or `probability`,
`variants`: `{NAME: weights}`, further personalised feeds ranked with those weights from the same candidates and
P(purchase), stored in the same generation and served to experiment arms whose feed is `variant:NAME`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
)

from ltvfeed.orchestration.assets import MARTS_ASSET_URI, PROPENSITY_MODEL_ASSET_URI
from ltvfeed.orchestration.dag_defaults import DAG_DEFAULTS
from ltvfeed.serving.config import describe_presets


@dag(
    dag_id="feed_generation",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * *", timezone="UTC"),
        assets=Asset(MARTS_ASSET_URI) | Asset(PROPENSITY_MODEL_ASSET_URI),
    ),
    **DAG_DEFAULTS,
    tags=["ltvfeed", "serving", "redis"],
    doc_md=__doc__,
    params={
        "as_of": Param(None, type=["null", "string"], format="date", description="Cutoff date; default: logical date"),
        "n": Param(10, type="integer", minimum=1, maximum=100, description="Feed length"),
        "weights": Param(
            "default",
            type=["string", "object"],
            description=f"Score weights (commercial/purchase/diversity): a preset name ({describe_presets()}) or "
            'an object of w_c commercial, w_p purchase propensity, w_d diversity and "preset", the setting they '
            "override (default if none)",
        ),
        "shards": Param(4, type="integer", minimum=1, maximum=1024, description="Parallel shards (mapped tasks)"),
        "K": Param(200, type="integer", minimum=1, maximum=10000, description="Candidates scored per user"),
        "chunk_users": Param(5000, type="integer", minimum=1, description="Users read and ranked at a time"),
        "propensity_source": Param(
            "registry",
            enum=["registry", "category_affinity"],
            description="registry: the purchase_propensity champion (required); category_affinity: cold start",
        ),
        "diversity": Param(
            {"category_weight": 0.5, "view_weight": 0.5},
            type="object",
            description="Similarity = category_weight * same category + rest * embedding cosine; view_weight scales "
            "similarity to recent views (picks count fully)",
        ),
        "variants": Param(
            {},
            type="object",
            description="Further personalised feeds of the run, ranked from the same candidates and P(purchase) "
            "with other weights (experiment arms variant:NAME): an object of NAME -> a preset name, "
            '"c/p/d" or a weights object as for weights',
        ),
        "purchase_scale": Param(
            "user_max",
            enum=["user_max", "probability"],
            description="P(purchase) component: relative to the user's likeliest candidate, or the raw probability",
        ),
    },
    default_args={"retries": 1, "retry_delay": pendulum.duration(minutes=2)},
)
def feed_generation():
    @task
    def resolve_as_of() -> str:
        from ltvfeed.orchestration.tasks import run_as_of

        return run_as_of(get_current_context()).isoformat()

    @task(retries=0)
    def begin(as_of: str) -> dict:
        from ltvfeed.orchestration.feed_tasks import begin_generation, params_from_dag
        from ltvfeed.settings import Settings

        ctx = get_current_context()
        return begin_generation(Settings(), params_from_dag(ctx["params"], as_of), origin=ctx["run_id"])

    @task
    def shard_numbers(plan: dict) -> list[int]:
        return plan["shards"]

    @task(max_active_tis_per_dagrun=16)
    def generate_shard(plan: dict, shard: int) -> dict:
        from ltvfeed.orchestration.feed_tasks import generate_shard as generate
        from ltvfeed.settings import Settings

        return generate(Settings(), plan, shard)

    @task
    def write_classic(plan: dict) -> dict:
        from ltvfeed.orchestration.feed_tasks import write_classic as write
        from ltvfeed.settings import Settings

        return write(Settings(), plan)

    @task(retries=0)
    def commit(plan: dict) -> dict:
        from ltvfeed.orchestration.feed_tasks import commit_generation
        from ltvfeed.settings import Settings

        return commit_generation(Settings(), plan)

    @task(trigger_rule="one_failed", retries=0)
    def discard_uncommitted() -> None:
        from ltvfeed.orchestration.feed_tasks import fail_after_discard
        from ltvfeed.settings import Settings

        plan = get_current_context()["ti"].xcom_pull(task_ids="begin")  # None when begin itself failed
        fail_after_discard(Settings(), plan)  # raises: the run must show as failed

    plan = begin(resolve_as_of())
    shards = generate_shard.partial(plan=plan).expand(shard=shard_numbers(plan))
    classic = write_classic(plan)
    committed = commit(plan)
    [shards, classic] >> committed
    [shards, classic, committed] >> discard_uncommitted()


feed_generation()

"""
### ltv_retrain

Retrains the LTV model and refreshes every customer's predicted long-term value. Runs weekly (Monday 04:00 UTC)
**and** whenever `ltv_pipeline` has refreshed and validated the marts (asset `ltvfeed://warehouse/marts`).

For a run with cutoff `as_of` D (param `as_of`, else the logical date; an asset-triggered run takes the `as_of`
the marts update names, i.e. the snapshot `ltv_pipeline` just validated) and horizon H (`horizon_days`; unset:
365 days when the shop's history before D allows, else the longest that fits it, holdout at the data's end − H;
a history too short for any is refused in seconds, naming the params to set):

1. **prepare_training_data**: holdout cutoff D − H (the latest whose labels are complete on D; param
   `holdout_cutoff`), training cutoffs ending at holdout − H (param `train_cutoff`), `train_cutoffs` of them
   `cutoff_step_days` apart. Missing `user_features` snapshots are built with dbt, `ltv_labels` for H, Feast
   definitions applied. Only data before D is read, so a backfill reproduces what a run on D did;
2. **train_and_register**: ZILN network and both baselines (naive, BG/NBD + Gamma-Gamma) on the same rows,
   metrics on the holdout, charts and the model logged to MLflow (experiment `ltv`), version registered as
   `ltv` (alias `challenger`), and `champion` given to it only if it beats the current champion on the same
   holdout by the configured margins (`LTVFEED_PROMOTION_*`); the reason is tagged either way;
3. **promotion_gate**: reports the decision; fails only if `ltv` has no champion at all;
4. **batch_score**: every customer of snapshot D through `models:/ltv@champion` (resolved now, so an alias
   moved by hand in the MLflow UI is honoured) into `marts.user_ltv_predictions`;
5. **materialize_predictions**: the snapshot's predictions into Redis (Feast view `user_ltv`, services
   `ltv_scores` and `user_profile`); publishes the asset `ltvfeed://warehouse/user_ltv_predictions`, which triggers
   `propensity_retrain`.

Backfill past cutoffs: `airflow backfill create --dag-id ltv_retrain --from-date ... --to-date ...`.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task

from ltvfeed.orchestration.assets import LTV_PREDICTIONS_ASSET_URI, MARTS_ASSET_URI
from ltvfeed.orchestration.dag_defaults import DAG_DEFAULTS


@dag(
    dag_id="ltv_retrain",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 4 * * 1", timezone="UTC"), assets=[Asset(MARTS_ASSET_URI)]
    ),
    **DAG_DEFAULTS,
    tags=["ltvfeed", "ltv", "training", "mlflow", "feast"],
    doc_md=__doc__,
    params={
        "as_of": Param(None, type=["null", "string"], format="date", description="Cutoff; default: logical date"),
        "horizon_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="LTV horizon H in days; default: 365 when the history allows, else the longest that fits",
        ),
        "train_cutoffs": Param(1, type="integer", minimum=1, description="Training cutoffs (training window)"),
        "cutoff_step_days": Param(30, type="integer", minimum=1, description="Days between training cutoffs"),
        "holdout_cutoff": Param(
            None, type=["null", "string"], format="date", description="Holdout cutoff; default as_of - H"
        ),
        "train_cutoff": Param(
            None, type=["null", "string"], format="date", description="Latest training cutoff; default holdout - H"
        ),
    },
    default_args={"retries": 0},
)
def ltv_retrain():
    @task
    def resolve_as_of() -> str:
        from ltvfeed.orchestration.ltv_tasks import retrain_as_of
        from ltvfeed.settings import Settings

        return retrain_as_of(Settings(), get_current_context()).isoformat()

    @task
    def prepare_training_data(as_of: str) -> dict:
        from ltvfeed.cutoff import parse_as_of
        from ltvfeed.orchestration.ltv_tasks import prepare_training_data as prepare
        from ltvfeed.settings import Settings

        return prepare(Settings(), parse_as_of(as_of), get_current_context()["params"])

    @task
    def train_and_register(prepared: dict) -> dict:
        from ltvfeed.orchestration.ltv_tasks import train_and_register as train
        from ltvfeed.settings import Settings

        return train(Settings(), prepared)

    @task
    def promotion_gate(trained: dict) -> dict:
        from ltvfeed.orchestration.ltv_tasks import promotion_gate as gate
        from ltvfeed.settings import Settings

        return gate(Settings(), trained)

    @task
    def batch_score(as_of: str, gate: dict) -> dict:
        from ltvfeed.cutoff import parse_as_of
        from ltvfeed.orchestration.ltv_tasks import batch_score as score
        from ltvfeed.settings import Settings

        return score(Settings(), parse_as_of(as_of))

    @task(outlets=[Asset(LTV_PREDICTIONS_ASSET_URI)])
    def materialize_predictions(as_of: str, scored: dict) -> dict:
        from ltvfeed.cutoff import parse_as_of
        from ltvfeed.orchestration.ltv_tasks import materialize_predictions as load
        from ltvfeed.settings import Settings

        loaded = load(Settings(), parse_as_of(as_of))
        get_current_context()["outlet_events"][Asset(LTV_PREDICTIONS_ASSET_URI)].extra = {"as_of": as_of}
        return loaded

    as_of = resolve_as_of()
    gate = promotion_gate(train_and_register(prepare_training_data(as_of)))
    materialize_predictions(as_of, batch_score(as_of, gate))


ltv_retrain()

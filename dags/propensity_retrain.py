"""
### propensity_retrain

Retrains the purchase-propensity model (`purchase_propensity`: P(user buys item within H days)) that ranks the
personal feeds. Runs weekly (Monday 06:00 UTC) **and** whenever `ltv_retrain` has refreshed the predicted LTVs
(asset `ltvfeed://warehouse/user_ltv_predictions`), since those predictions are user features of this model.

For a run with cutoff `as_of` D (param `as_of`, else the logical date; an asset-triggered run takes the `as_of`
the triggering event names) and purchase window H (`propensity_horizon_days`, default 30):

1. **prepare**: training cutoff D − 2H, evaluation cutoff D − H; the missing `user_features`,
   `item_performance` and `user_category_propensity` snapshots are built with dbt, Feast definitions applied.
   Only data before D is read, so a backfill reproduces what a run on D did;
2. **train_and_register**: two-tower network with side features trained on the first cutoff's purchase window
   (sampled negatives), judged on the second against the popularity and classic (commercial) rankings; logged
   to MLflow (experiment `purchase_propensity`), registered (alias `challenger`), promoted to `champion` only
   if it beats the champion on the same holdout (`LTVFEED_PROPENSITY_PROMOTION_*`); the reason is tagged;
3. **promotion_gate**: reports the decision, fails only if there is no champion at all; publishes the asset
   `ltvfeed://models/purchase_propensity`, which triggers `feed_generation`.

Backfill past cutoffs: `airflow backfill create --dag-id propensity_retrain --from-date ... --to-date ...`.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task

from ltvfeed.orchestration.assets import LTV_PREDICTIONS_ASSET_URI, PROPENSITY_MODEL_ASSET_URI
from ltvfeed.orchestration.dag_defaults import DAG_DEFAULTS


@dag(
    dag_id="propensity_retrain",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * 1", timezone="UTC"), assets=[Asset(LTV_PREDICTIONS_ASSET_URI)]
    ),
    **DAG_DEFAULTS,
    tags=["ltvfeed", "propensity", "training", "mlflow", "feast"],
    doc_md=__doc__,
    params={
        "as_of": Param(None, type=["null", "string"], format="date", description="Cutoff; default: logical date"),
        "propensity_horizon_days": Param(30, type="integer", minimum=1, description="Purchase window H in days"),
        "seed": Param(0, type="integer", minimum=0, description="Seed of sampling, initialisation, shuffling"),
        "max_epochs": Param(40, type="integer", minimum=1, description="Upper bound; early stopping ends sooner"),
    },
    default_args={"retries": 0},
)
def propensity_retrain():
    @task
    def resolve_as_of() -> str:
        from ltvfeed.orchestration.ltv_tasks import retrain_as_of
        from ltvfeed.settings import Settings

        return retrain_as_of(Settings(), get_current_context()).isoformat()

    @task
    def prepare(as_of: str) -> dict:
        from ltvfeed.cutoff import parse_as_of
        from ltvfeed.orchestration.propensity_tasks import prepare_propensity_data
        from ltvfeed.settings import Settings

        return prepare_propensity_data(Settings(), parse_as_of(as_of), get_current_context()["params"])

    @task
    def train_and_register(prepared: dict) -> dict:
        from ltvfeed.orchestration.propensity_tasks import train_and_register as train
        from ltvfeed.settings import Settings

        return train(Settings(), prepared, get_current_context()["params"])

    @task(outlets=[Asset(PROPENSITY_MODEL_ASSET_URI)])
    def promotion_gate(trained: dict) -> dict:
        from ltvfeed.orchestration.ltv_tasks import promotion_gate as gate
        from ltvfeed.settings import Settings
        from ltvfeed.training.propensity.config import MODEL_NAME

        decision = gate(Settings(), trained, MODEL_NAME)
        get_current_context()["outlet_events"][Asset(PROPENSITY_MODEL_ASSET_URI)].extra = {"as_of": trained["as_of"]}
        return decision

    promotion_gate(train_and_register(prepare(resolve_as_of())))


propensity_retrain()

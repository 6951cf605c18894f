"""Airflow asset URIs that chain the DAGs: each names what a DAG publishes, so the next one runs when it changes.

    ltv_pipeline --marts--> ltv_retrain --ltv predictions--> propensity_retrain --propensity model--> feed_generation
                   \\--------------------------------------------------------------------------------^

Every event carries ``extra={"as_of": "YYYY-MM-DD"}``: the snapshot it is about, so a triggered run works on
that cutoff rather than on the day it happens to start.
"""

from __future__ import annotations

MARTS_ASSET_URI = "ltvfeed://warehouse/marts"
LTV_PREDICTIONS_ASSET_URI = "ltvfeed://warehouse/user_ltv_predictions"
PROPENSITY_MODEL_ASSET_URI = "ltvfeed://models/purchase_propensity"

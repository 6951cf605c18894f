"""Batch scoring: every customer of a ``user_features`` snapshot through the ``ltv`` champion, written to
``marts.user_ltv_predictions`` (by :mod:`ltvfeed.warehouse.predictions`) and loaded into Redis through Feast
(feature view ``user_ltv``).

The champion is whatever holds the ``champion`` alias when scoring starts (a move by hand in the MLflow UI
counts): the alias is resolved once and that version is loaded, so the rows name the version that made them.

Writes are idempotent per (as_of, horizon, model, version): scoring again replaces those rows. Scoring an as_of
with another version than its previous scoring adds rows one *revision* later: their feature_timestamp is as_of
00:00 UTC + revision microseconds. Point-in-time joins and Redis then serve the newest scoring, and an older
snapshot scored late (a backfill) never overwrites a newer one online. (Feast's Redis store keeps the stored
value when a write has the same event time, and the PostgreSQL offline store has no push: the table is the
offline truth, and the online store is loaded from it by materialising the view for that one snapshot.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ltvfeed.cutoff import cutoff_instant
from ltvfeed.errors import UserError
from ltvfeed.training.ltv_data import FeatureSchema, as_model_input
from ltvfeed.training.ltv_run import MODEL_NAME
from ltvfeed.warehouse.ltv_reads import snapshot_features
from ltvfeed.warehouse.predictions import newest_scoring, replace_predictions, served_prediction
from ltvfeed.warehouse.snapshots import latest_snapshot

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack

log = logging.getLogger(__name__)

ONLINE_VIEW = "user_ltv"
OUTPUT_COLUMNS = ["prob_return", "expected_ltv", "p10", "p50", "p90"]


@dataclass(frozen=True)
class ScoreResult:
    as_of: date
    model_name: str
    version: str
    horizon_days: int
    rows: int
    revision: int
    feature_timestamp: datetime
    predict_seconds: float
    total_seconds: float

    @property
    def users_per_second(self) -> float:
        return self.rows / self.predict_seconds if self.predict_seconds > 0 else float("inf")

    def summary(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "model": f"{self.model_name}/{self.version}",
            "horizon_days": self.horizon_days,
            "rows": self.rows,
            "revision": self.revision,
            "feature_timestamp": self.feature_timestamp.isoformat(),
            "users_per_second": round(self.users_per_second),
            "seconds": round(self.total_seconds, 2),
        }


def load_champion_version(stack: Stack, model_name: str = MODEL_NAME) -> tuple[str, Any]:
    """(version, pyfunc model) of the model's champion, resolved through the alias now."""
    from ltvfeed.infra.tracking import configure_mlflow
    from ltvfeed.training.registry import current_champion

    configure_mlflow(stack)
    version = current_champion(stack, model_name)
    if version is None:
        raise UserError(
            f"model {model_name!r} has no champion: train one (ltvfeed ltv train) or set the 'champion' alias in "
            "the MLflow UI / with `ltvfeed models promote`"
        )
    import mlflow

    return version, mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")


def schema_of(model: Any) -> FeatureSchema:
    """The input columns a loaded LTV pyfunc was trained on (from its metadata)."""
    extra = getattr(getattr(model, "metadata", None), "metadata", None) or {}
    if "feature_columns" not in extra:
        raise UserError("the loaded model was not logged by ltvfeed's LTV training (no feature_columns metadata)")
    categorical = set(extra.get("categorical_columns", []))
    columns = list(extra["feature_columns"])
    return FeatureSchema(
        tuple(c for c in columns if c not in categorical), tuple(c for c in columns if c in categorical)
    )


def score_snapshot(
    stack: Stack,
    as_of: date | None = None,
    model_name: str = MODEL_NAME,
    *,
    chunk_rows: int = 200_000,
    echo: Callable[[str], None] | None = None,
) -> ScoreResult:
    """Score every customer of snapshot ``as_of`` (default: the newest) with the champion; write the rows."""
    from ltvfeed.training.ltv_pyfunc import horizon_of

    started = time.perf_counter()
    dsn = stack.warehouse_dsn
    as_of = as_of or latest_snapshot(dsn)
    version, model = load_champion_version(stack, model_name)
    schema = schema_of(model)
    horizon = horizon_of(model)
    frame = snapshot_features(dsn, as_of, schema.columns)
    if echo:
        echo(f"scoring {len(frame)} customers of snapshot {as_of} with {model_name} v{version} (H={horizon}) ...")
    inputs = as_model_input(frame, schema)
    predict_started = time.perf_counter()
    parts = [model.predict(inputs.iloc[i : i + chunk_rows]) for i in range(0, len(inputs), chunk_rows)]
    predict_seconds = time.perf_counter() - predict_started
    predictions = pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS]
    if not np.isfinite(predictions.to_numpy()).all():
        raise UserError(f"{model_name} v{version} produced non-finite predictions for snapshot {as_of}")
    revision, stamp = write_predictions(
        dsn, as_of, horizon, model_name, version, frame["user_id"].to_numpy(), predictions
    )
    total_seconds = time.perf_counter() - started
    return ScoreResult(as_of, model_name, version, horizon, len(frame), revision, stamp, predict_seconds, total_seconds)


def write_predictions(
    dsn: str,
    as_of: date,
    horizon_days: int,
    model_name: str,
    version: str,
    user_ids: np.ndarray,
    predictions: pd.DataFrame,
) -> tuple[int, datetime]:
    """Replace this (as_of, horizon, model, version)'s rows; returns (revision, feature_timestamp) of the rows
    written (see the module doc for revisions)."""
    scores = pd.DataFrame({"user_id": user_ids, **{c: predictions[c].to_numpy(np.float64) for c in OUTPUT_COLUMNS}})
    return replace_predictions(dsn, as_of, horizon_days, model_name, str(version), scores)


def materialize_predictions(stack: Stack, as_of: date, *, store: Any = None) -> dict[str, Any]:
    """Load the newest scoring of snapshot ``as_of`` into Redis (Feast view ``user_ltv``), registering the
    Feast definitions first when this deployment has not applied the view yet."""
    from ltvfeed.features import apply, feature_store, materialize

    newest = newest_scoring(stack.warehouse_dsn, as_of)
    if newest is None:
        raise UserError(f"no LTV predictions for snapshot {as_of}: score it first (ltvfeed ltv score --as-of {as_of})")
    store = store or feature_store(stack)
    if ONLINE_VIEW not in {v.name for v in store.list_feature_views()}:
        apply(stack, store=store)
    materialize(stack, cutoff_instant(as_of), newest[0], views=[ONLINE_VIEW], store=store)
    return {"as_of": as_of.isoformat(), "view": ONLINE_VIEW, "rows": int(newest[1]), "until": newest[0].isoformat()}


@dataclass(frozen=True)
class ServedScoring:
    """Which version's scores apps read, against the version that holds ``champion`` now. The newest scoring
    of the newest scored snapshot is what point-in-time joins and the online store (view ``user_ltv``) serve."""

    model_name: str
    as_of: date | None  # newest snapshot scored by this model; None: never scored
    version: str | None  # the version whose scoring of it is served
    champion: str | None

    @property
    def stale(self) -> bool:
        """The champion moved (promotion, rollback, or by hand in the MLflow UI) since the served scoring."""
        return self.as_of is not None and self.champion is not None and self.version != self.champion

    @property
    def command(self) -> str:
        """What re-scores the served snapshot with the champion and loads it into Redis."""
        return f"ltvfeed ltv score --as-of {self.as_of}"

    def warning(self) -> str:
        return (
            f"{self.model_name}: apps read v{self.version}'s scores of snapshot {self.as_of}, but the champion is "
            f"v{self.champion}; re-score with `{self.command}`"
        )


def served_scoring(stack: Stack, model_name: str = MODEL_NAME) -> ServedScoring:
    """The scoring apps read now (see :class:`ServedScoring`) and the current champion."""
    from ltvfeed.training.registry import current_champion

    as_of, version = served_prediction(stack.warehouse_dsn, model_name) or (None, None)
    return ServedScoring(model_name, as_of, version, current_champion(stack, model_name))


def republish_champion(
    stack: Stack, model_name: str = MODEL_NAME, *, echo: Callable[[str], None] | None = None
) -> ScoreResult | None:
    """After the champion moved: re-score the served snapshot with the champion and load it into Redis, so
    that what apps read follows the alias. None when the served scoring already is the champion's."""
    served = served_scoring(stack, model_name)
    if not served.stale:
        return None
    assert served.as_of is not None
    result = score_snapshot(stack, served.as_of, model_name, echo=echo)
    materialize_predictions(stack, served.as_of)
    return result

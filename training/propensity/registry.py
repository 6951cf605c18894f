"""MLflow glue: log a scorer as a pyfunc model (signature + input example), load ``purchase_propensity@alias``.

Registration and promotion are the shared registry's (:func:`ltvfeed.training.registry.register_and_promote`),
with :class:`PropensityPromotionConfig` (NDCG@10 must improve, AUC must not drop much).
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.training.propensity.config import MODEL_NAME

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from ltvfeed.infra.stack import Stack
    from ltvfeed.training.propensity.scorer import PropensityScorer


def pip_requirements() -> list[str]:
    """What the pyfunc needs besides this project (the ltvfeed package provides the scorer's code)."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in ("mlflow", "torch", "pandas", "numpy", "pyarrow")]


def log_scorer(scorer: PropensityScorer, example: pd.DataFrame, name: str = "model") -> ModelInfo:
    """Log ``scorer`` in the active run as a pyfunc model; ``example`` holds a few (user_id, item_id) rows."""
    import mlflow
    from mlflow.models import infer_signature

    from ltvfeed.training.propensity.pyfunc import SCORER_ARTIFACT, PropensityPyfunc

    example = example[["user_id", "item_id"]].astype(str).reset_index(drop=True)
    signature = infer_signature(example, scorer.score_pairs(example["user_id"], example["item_id"]))
    with tempfile.TemporaryDirectory(prefix="propensity-") as tmp:
        directory = scorer.save(Path(tmp) / SCORER_ARTIFACT)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=PropensityPyfunc(),
            artifacts={SCORER_ARTIFACT: str(directory)},
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
        )


def scorer_from_pyfunc(model: Any) -> PropensityScorer:
    """The PropensityScorer inside a loaded pyfunc model of ``purchase_propensity``."""
    from ltvfeed.training.propensity.scorer import PropensityScorer

    inner = model.unwrap_python_model()
    scorer = getattr(inner, "scorer", None)
    if not isinstance(scorer, PropensityScorer):
        raise UserError(f"the loaded model is not a propensity scorer ({type(inner).__name__})")
    return scorer


LTV_FEATURES_PARAM = "ltv_feature_columns"  # run param: the LTV prediction columns the network reads, or "none"


def ltv_model_read_by(stack: Stack, version: str) -> str | None:
    """The LTV model whose predictions ``purchase_propensity`` ``version`` reads as user features (its run's
    ``ltv_model`` param), or None when it reads none: what a feed generation records beside the version."""
    from ltvfeed.infra.tracking import configure_mlflow

    client = configure_mlflow(stack)
    run_id = client.get_model_version(MODEL_NAME, str(version)).run_id
    params = client.get_run(run_id).data.params if run_id else {}
    if params.get(LTV_FEATURES_PARAM, "none") == "none" or params.get("ltv_model") in (None, "", "None"):
        return None
    return params["ltv_model"]


def load_propensity(stack: Stack, alias: str = "champion", as_of: date | None = None) -> PropensityScorer:
    """``models:/purchase_propensity@<alias>`` as a scorer, with ``scorer.version`` set.

    ``as_of`` None: the scorer's own rows (the feature snapshot it was evaluated on at training). A date:
    rebuilt over that snapshot's users and items (:meth:`PropensityScorer.refresh`): feed generation for a
    cutoff passes it so users and items are scored with that day's features.
    """
    from mlflow.exceptions import MlflowException

    from ltvfeed.infra.tracking import configure_mlflow

    client = configure_mlflow(stack)
    try:
        version = client.get_model_version_by_alias(MODEL_NAME, alias)
    except MlflowException as exc:
        raise UserError(
            f"no model version {MODEL_NAME}@{alias}: train one with `ltvfeed propensity train --cutoff ... "
            f"--eval-cutoff ...` (or set the alias with `ltvfeed models promote`)"
        ) from exc
    import mlflow

    scorer = scorer_from_pyfunc(mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{alias}"))
    scorer.metadata.update({"version": str(version.version), "alias": alias, "run_id": version.run_id})
    if as_of is not None:
        scorer = scorer.refresh(stack, as_of)
    return scorer


FLOOR_METRIC = "ndcg_at_10"


def champion_floor(stack: Stack, version: str, metric: str = FLOOR_METRIC) -> dict[str, Any]:
    """How propensity ``version`` did against the simple baselines on its out-of-time evaluation (its training
    run's metrics): ``{"metric", "version", "model", "baselines": {name: value}, "fallback"}``, where
    ``fallback`` names the best baseline when the model did not beat it (a version promoted by hand past the
    gate), else None. Feed generation records this and serves users with history that baseline's feed instead,
    or, when it is ``cold_start``, every user the cold-start source's feed."""
    from ltvfeed.infra.tracking import configure_mlflow
    from ltvfeed.training.propensity.evaluate import MODEL_ROWS

    client = configure_mlflow(stack)
    run_id = client.get_model_version(MODEL_NAME, str(version)).run_id
    metrics = client.get_run(run_id).data.metrics if run_id else {}
    suffix = f".{metric}"
    found = {k[: -len(suffix)]: float(v) for k, v in metrics.items() if k.endswith(suffix)}
    found = {name: v for name, v in found.items() if name not in MODEL_ROWS}  # the model's own rows: no baseline
    mine = metrics.get(metric)
    fallback = None
    if mine is not None and found:
        best = max(found, key=found.get)
        fallback = None if float(mine) > found[best] else best
    return {
        "metric": metric,
        "version": str(version),
        "model": None if mine is None else float(mine),
        "baselines": found,
        "fallback": fallback,
    }

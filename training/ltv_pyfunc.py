"""The LTV network as an MLflow pyfunc model: what the registry holds and batch scoring loads.

The artifact is the ``LtvModel`` directory (spec.json + model.pt: the network with its feature encoder) plus
the input schema, so a loaded model needs only the ``ltvfeed`` package (for the classes), not the training
code's state. ``predict`` takes the feature columns of the ``ltv_model`` service and returns prob_return,
expected_ltv, p10, p50, p90 per row. The signature types numbers as double and categories as string, the way
:func:`~ltvfeed.training.ltv_data.as_model_input` prepares every frame.
"""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd

from ltvfeed.training.ltv_data import FeatureSchema, as_model_input

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from ltvfeed.training.fit import LtvModel

ARTIFACT = "ltv_model"
SCHEMA_FILE = "input_schema.json"
OUTPUT_COLUMNS = ["prob_return", "expected_ltv", "p10", "p50", "p90"]
FLAVOR_NOTE = "needs the ltvfeed package (ltvfeed.training) importable where it is loaded"


class LtvPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the saved ``LtvModel`` and scores DataFrames with it."""

    def load_context(self, context: Any) -> None:
        from ltvfeed.training.fit import LtvModel

        directory = Path(context.artifacts[ARTIFACT])
        self.model = LtvModel.load(directory)
        spec = json.loads((directory / SCHEMA_FILE).read_text())
        self.schema = FeatureSchema(tuple(spec["numeric"]), tuple(spec["categorical"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        scored = self.model.predict(as_model_input(frame, self.schema))
        return scored[OUTPUT_COLUMNS].reset_index(drop=True)


def save_artifact(model: LtvModel, schema: FeatureSchema, directory: Path) -> Path:
    """The pyfunc's artifact directory: the saved LtvModel plus the input schema."""
    model.save(directory)
    (directory / SCHEMA_FILE).write_text(
        json.dumps({"numeric": list(schema.numeric), "categorical": list(schema.categorical)}, indent=2)
    )
    return directory


def pip_requirements() -> list[str]:
    """Pinned to what trained it; given explicitly so MLflow does not spend seconds inferring them."""
    return [f"{name}=={version(name)}" for name in ("mlflow", "torch", "pandas", "numpy")]


def model_metadata(model: LtvModel, schema: FeatureSchema) -> dict[str, Any]:
    return {
        "horizon_days": model.horizon_days,
        "feature_columns": schema.columns,
        "categorical_columns": list(schema.categorical),
        "outputs": OUTPUT_COLUMNS,
        "note": FLAVOR_NOTE,
    }


def _pyfunc_arguments(model: LtvModel, schema: FeatureSchema, example: pd.DataFrame, workdir: Path) -> dict:
    """What log_model and save_model both get: the artifact, signature, input example and metadata."""
    from mlflow.models import infer_signature

    sample = as_model_input(example.head(5), schema).reset_index(drop=True)
    return {
        "python_model": LtvPyfunc(),
        "artifacts": {ARTIFACT: str(save_artifact(model, schema, workdir / ARTIFACT))},
        "signature": infer_signature(sample, model.predict(sample)[OUTPUT_COLUMNS]),
        "input_example": sample,
        "pip_requirements": pip_requirements(),
        "metadata": model_metadata(model, schema),
    }


def log_ltv_model(model: LtvModel, schema: FeatureSchema, example: pd.DataFrame, name: str = "model") -> ModelInfo:
    """Log ``model`` as a pyfunc in the active run, with signature and input example (a few rows of
    ``example``). Returns MLflow's ModelInfo (``model_uri`` is what the registry registers)."""
    with tempfile.TemporaryDirectory(prefix="ltv-model-") as tmp:
        return mlflow.pyfunc.log_model(name=name, **_pyfunc_arguments(model, schema, example, Path(tmp)))


def save_ltv_model(model: LtvModel, schema: FeatureSchema, path: Path, example: pd.DataFrame) -> Path:
    """Save the same pyfunc to a local folder (no tracking store): for tests and offline use."""
    with tempfile.TemporaryDirectory(prefix="ltv-model-") as tmp:
        mlflow.pyfunc.save_model(path=str(path), **_pyfunc_arguments(model, schema, example, Path(tmp)))
    return Path(path)


def horizon_of(pyfunc_model: Any) -> int:
    """The horizon (days) a loaded LTV pyfunc predicts for, from its metadata."""
    metadata = getattr(pyfunc_model, "metadata", None)
    extra = getattr(metadata, "metadata", None) or {}
    if "horizon_days" not in extra:
        raise ValueError("the loaded model has no horizon_days metadata: it was not logged by ltvfeed's LTV training")
    return int(extra["horizon_days"])

"""The MLflow pyfunc face of a :class:`PropensityScorer` (imports MLflow: load this module lazily).

``predict`` takes a frame of ``user_id``, ``item_id`` pairs and returns P(buy) per row, so the registered model
works with any pyfunc tooling; feed generation uses the scorer itself (``unwrap_python_model().scorer``, see
:func:`ltvfeed.training.propensity.registry.load_propensity`), which scores whole candidate matrices at once.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd

from ltvfeed.errors import UserError
from ltvfeed.training.propensity.data import ITEM_KEY, USER_KEY

SCORER_ARTIFACT = "scorer"


class PropensityPyfunc(mlflow.pyfunc.PythonModel):
    """Artifacts: ``scorer`` = a directory written by ``PropensityScorer.save``."""

    def load_context(self, context: Any) -> None:
        from ltvfeed.training.propensity.scorer import PropensityScorer

        self.scorer = PropensityScorer.load(context.artifacts[SCORER_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        missing = [c for c in (USER_KEY, ITEM_KEY) if c not in frame.columns]
        if missing:
            raise UserError(f"propensity input lacks column(s) {missing}; give user_id and item_id per row")
        return self.scorer.score_pairs(frame[USER_KEY].to_numpy(), frame[ITEM_KEY].to_numpy())

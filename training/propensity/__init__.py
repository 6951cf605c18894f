"""Purchase propensity: P(user buys item within the horizon), a two-tower model whose score is a dot product.

data (point-in-time pairs with sampled negatives), model (the nn.Module), fit, scorer (the serving object),
evaluate (AUC, NDCG@k, Recall@k vs popularity and commercial_score), registry (MLflow), train (one run).

Serving contract (feed generation codes against these names)::

    scorer = load_propensity(stack, alias="champion")      # models:/purchase_propensity@champion
    rows = scorer.user_index(user_ids)                      # -1 = cold user, still scored
    propensity = scorer.for_catalogue(catalogue)            # ltvfeed/frames/propensity.py's callable, catalogue rows
    p = propensity(rows, candidate_catalogue_rows)          # [B, K] in [0, 1]

Names are resolved lazily so that importing this package does not import torch or MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PropensityConfig": "config",
    "PropensityPromotionConfig": "config",
    "MODEL_NAME": "config",
    "DEFAULT_HORIZON_DAYS": "config",
    "PropensityScorer": "scorer",
    "CataloguePropensity": "scorer",
    "load_propensity": "registry",
    "train_propensity": "train",
    "TrainResult": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

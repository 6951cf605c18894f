"""The feature store (Feast over the dbt marts, Redis online): configuration, apply, materialisation,
training frames and online reads. Definitions live in feature_repo/; every function takes the running
:class:`~ltvfeed.infra.stack.Stack`.

Names are imported from their modules on first use (PEP 562), so that a quick command such as
``ltvfeed features get`` loads only what it reads with; Feast itself is imported only when a function runs."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "cutoff": ("ltvfeed.cutoff", "cutoff_instant"),  # as_of 00:00 UTC: a snapshot's feature_timestamp
    **{n: ("ltvfeed.features.config", n) for n in ("feast_env", "feast_project", "feature_repo_dir")},
    **{n: ("ltvfeed.features.config", n) for n in ("feature_store", "repo_config")},
    **{n: ("ltvfeed.features.materialization", n) for n in ("Window", "clear_online", "materialize")},
    "materialize_incremental": ("ltvfeed.features.materialization", "materialize_incremental"),
    **{n: ("ltvfeed.features.repository", n) for n in ("ApplyResult", "apply", "load_definitions")},
    **{
        n: ("ltvfeed.features.retrieval", n)
        for n in (
            "OnlineFeatures",
            "feature_refs",
            "online_item_features",
            "online_user_features",
            "service_join_key",
            "training_frame",
        )
    },
    **{n: ("ltvfeed.features.server", n) for n in ("feast_cli", "serve_command")},
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _HOMES[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})

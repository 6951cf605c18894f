"""The feature store (Feast over the dbt marts, Redis online): configuration, apply, materialisation,
training frames and online reads. Definitions live in feature_repo/; every function takes the running
:class:`~ltvfeed.infra.stack.Stack` (Feast itself is imported only when a function runs)."""

from ltvfeed.cutoff import cutoff_instant as cutoff  # as_of 00:00 UTC: a snapshot's feature_timestamp
from ltvfeed.features.config import feast_env, feast_project, feature_repo_dir, feature_store, repo_config
from ltvfeed.features.materialize import Window, clear_online, materialize, materialize_incremental
from ltvfeed.features.repository import ApplyResult, apply, load_definitions
from ltvfeed.features.retrieval import (
    OnlineFeatures,
    feature_refs,
    online_item_features,
    online_user_features,
    training_frame,
)
from ltvfeed.features.server import feast_cli, serve_command

__all__ = [
    "ApplyResult",
    "OnlineFeatures",
    "Window",
    "apply",
    "clear_online",
    "cutoff",
    "feast_cli",
    "feast_env",
    "feast_project",
    "feature_refs",
    "feature_repo_dir",
    "feature_store",
    "load_definitions",
    "materialize",
    "materialize_incremental",
    "online_item_features",
    "online_user_features",
    "repo_config",
    "serve_command",
    "training_frame",
]

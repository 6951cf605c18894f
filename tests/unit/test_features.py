"""The Feast definitions without servers: the feature services, each keyed by one entity, the config values, and
that importing Feast for reads leaves torch and typeguard as they were. Reads against real PostgreSQL and Redis
are in tests/integration/test_features.py."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from ltvfeed.errors import UserError
from ltvfeed.features import (
    feast_project,
    load_definitions,
)
from ltvfeed.features.config import redis_connection_string

TTL = timedelta(days=3)


# ---------------------------------------------------------------------------------------------- no database


def test_definitions_and_services() -> None:
    repo = load_definitions()
    views = {v.name: v for v in repo.feature_views}
    assert set(views) == {
        "user_rfm",
        "user_engagement",
        "user_search",
        "user_demographics",
        "user_preferences",
        "user_category_propensity",
        "user_category_affinity",
        "item_performance",
        "user_ltv",  # LTV predictions (marts.user_ltv_predictions, written by batch scoring)
        "user_recent_purchases",  # the feed API's freshness filter (snapshots + pushes)
        "user_live_activity",  # the last hour and current preferences (collector pushes only)
    }
    assert all(v.batch_source.timestamp_field == "feature_timestamp" for v in views.values())
    pushed_only, weekly = "user_live_activity", "user_ltv"
    assert all(v.ttl == TTL for name, v in views.items() if name not in (weekly, pushed_only))  # mart snapshots
    assert views[weekly].ttl == timedelta(days=10)  # refreshed weekly by ltv_retrain
    assert views[pushed_only].ttl == timedelta(days=1)  # a day without a push reads as missing
    assert views["user_category_propensity"].entities == ["user", "category"]
    services = {s.name: s for s in repo.feature_services}
    assert set(services) == {"ltv_model", "user_profile", "item_catalog", "ltv_scores", "freshness", "live_activity"}
    for service in services.values():  # plain feature names must not clash inside a service
        names = [f.name for p in service.feature_view_projections for f in p.features]
        assert len(names) == len(set(names)), service.name
    items = {f.name for p in services["item_catalog"].feature_view_projections for f in p.features}
    assert {"commercial_score", "category", "price", "in_stock", "is_repeat_purchase"} <= items


def test_every_service_is_keyed_by_one_entity() -> None:
    """An app reads a service online with one entity's key alone: Feast (SDK and `feast serve`) requires the
    join keys of every view in a service, so a service mixing user and item views answers a user id with 500."""
    repo = load_definitions()
    views = {v.name: v for v in repo.feature_views}
    keyed = {s.name: {tuple(views[p.name].entities) for p in s.feature_view_projections} for s in repo.feature_services}
    assert keyed == {
        "ltv_model": {("user",)},
        "user_profile": {("user",)},
        "ltv_scores": {("user",)},
        "freshness": {("user",)},
        "live_activity": {("user",)},
        "item_catalog": {("item",)},
    }
    # no service claims a consumer that does not read it (feed scoring reads the marts in batch)
    assert not any("feed scoring" in (s.description + str(s.tags)) for s in repo.feature_services)


def test_feast_imported_for_reads_leaves_torch_and_typeguard_as_they_were() -> None:
    """The quick import (no typeguard instrumentation, no torch) is undone afterwards in the same process."""
    code = (
        "import sys, typeguard; before = typeguard.typechecked\n"
        "from ltvfeed.features.config import import_feast_for_reads; import_feast_for_reads()\n"
        "import feast.torch_wrapper as w\n"
        "assert 'feast' in sys.modules and not w.TORCH_AVAILABLE and typeguard.typechecked is before\n"
        "assert 'torch' not in sys.modules\n"
        "from feast import FeatureStore, RepoConfig\n"
        "import torch; assert torch.zeros(1).sum().item() == 0\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_config_values() -> None:
    assert feast_project("ltvfeed:") == "ltvfeed"
    assert feast_project("ltvfeed_test_1a2b:x:") == "ltvfeed_test_1a2b_x"
    assert redis_connection_string("redis://127.0.0.1:6390/2") == "127.0.0.1:6390,db=2"
    assert redis_connection_string("rediss://:s%40cret@cache:6380") == "cache:6380,db=0,password=s@cret,ssl=true"
    with pytest.raises(UserError, match="redis"):
        redis_connection_string("http://127.0.0.1:6379")
    with pytest.raises(UserError):
        feast_project("::")

"""The feed API under running experiments, on an in-process fakeredis: each user gets their arm's feed (control =
the generation's classic feed, treatment = their personal feed), stable across requests and app restarts; the
long-term holdout always gets the classic feed; with no experiment running everyone gets their personal feed; a
variant arm gets its variant (a generation without it: the personalised feed). Exposure logging against
PostgreSQL is in tests/integration/test_api_experiments.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from ltvfeed.experiments.assignment import Holdout, assign
from ltvfeed.experiments.registry import RUNNING_KEY, Experiment, FeedArm
from ltvfeed.serving.api import create_app
from ltvfeed.serving.config import FeedConfig, ScoringWeights
from ltvfeed.serving.feed import Feed, FeedItem
from ltvfeed.serving.feed_store import FeedStore
from ltvfeed.settings import Settings
from tests.unit.test_api import OPTIONS

USERS = [f"u{i:04d}" for i in range(300)]
EXPERIMENT = Experiment(
    name="feed-v1",
    salt="salt-1",
    arms=[FeedArm(name="control", weight=1, feed="classic"), FeedArm(name="treatment", weight=1, feed="personalised")],
    traffic_share=0.6,
)


def _feed(user: str, tag: str) -> Feed:
    return Feed(user, tuple(FeedItem(f"{tag}-i{k}", 1 - k / 20, 0.5, None, 0.5) for k in range(10)))


@pytest.fixture
def shop(fake_redis_url: str, tmp_path) -> Iterator[dict]:
    prefix = f"exp{uuid.uuid4().hex[:6]}:"
    store = FeedStore(fake_redis_url, prefix)
    gen = store.begin_generation(model_versions={"ltv": "1"}, config=FeedConfig())
    store.write_shard(gen, 0, [_feed(u, u) for u in USERS])
    store.write_classic(gen, _feed("any", "classic"))
    store.commit_generation(gen, expected_shards=1)
    client = redis.Redis.from_url(fake_redis_url)
    client.set(f"{prefix}{RUNNING_KEY}", f"[{EXPERIMENT.model_dump_json()}]")
    yield {"url": fake_redis_url, "prefix": prefix, "state": tmp_path}
    client.close()
    store.client.close()


def _client(shop: dict, **settings) -> TestClient:
    s = Settings(redis_url=shop["url"], redis_prefix=shop["prefix"], state_dir=shop["state"], **settings)
    return TestClient(create_app(s, options=OPTIONS))  # the default 75 ms timed out under CI load


def test_each_user_gets_their_arms_feed_stably(shop) -> None:
    with _client(shop) as client:
        first = {u: client.get(f"/v1/users/{u}/feed").json() for u in USERS}
    with _client(shop) as client:  # a restarted API assigns the same way
        again = {u: client.get(f"/v1/users/{u}/feed").json() for u in USERS}
    arms = {u: assign(EXPERIMENT, u) for u in USERS}
    assert 0.5 < sum(a is not None for a in arms.values()) / len(USERS) < 0.7
    for u in USERS:
        body, arm = first[u], arms[u]
        assert (body["experiment"], body["arm"]) == (("feed-v1", arm) if arm else (None, None))
        assert again[u]["arm"] == body["arm"]
        classic = body["items"][0]["item_id"].startswith("classic-")
        assert classic == (arm == "control")
        assert body["personalised"] == (arm != "control")
        assert (body["feed_id"] is not None) == (arm is not None)
    feed_ids = [b["feed_id"] for b in first.values() if b["feed_id"]]
    assert len(set(feed_ids)) == len(feed_ids)


def test_holdout_always_gets_the_classic_feed(shop) -> None:
    holdout = Holdout(share=0.3)
    with _client(shop, holdout_share=0.3) as client:
        bodies = {u: client.get(f"/v1/users/{u}/feed").json() for u in USERS}
    held = [u for u in USERS if holdout.contains(u)]
    assert 40 < len(held) < 140
    for u in held:
        assert bodies[u]["personalised"] is False and bodies[u]["experiment"] is None
        assert bodies[u]["items"][0]["item_id"].startswith("classic-")
    others = [u for u in USERS if u not in set(held) and assign(EXPERIMENT, u) is None]
    assert others and all(bodies[u]["personalised"] for u in others)


def test_no_running_experiment_serves_personal_feeds(shop) -> None:
    redis.Redis.from_url(shop["url"]).set(f"{shop['prefix']}{RUNNING_KEY}", "[]")
    with _client(shop) as client:
        bodies = [client.get(f"/v1/users/{u}/feed").json() for u in USERS[:50]]
    assert all(b["personalised"] and b["experiment"] is None and b["feed_id"] is None for b in bodies)


VARIANTS = Experiment(
    name="feed-v2",
    salt="salt-2",
    arms=[
        FeedArm(name="control", weight=1, feed="classic"),
        FeedArm(name="concept", weight=1, feed="variant:concept"),
        FeedArm(name="ghost", weight=1, feed="variant:ghost"),  # a variant the generation lacks
    ],
    traffic_share=1.0,
)


@pytest.fixture
def variant_shop(shop: dict) -> dict:
    """The shop's prefix now serving a generation with the variant ``concept`` and running :data:`VARIANTS`."""
    store = FeedStore(shop["url"], shop["prefix"])
    gen = store.begin_generation(config=FeedConfig(), variants={"concept": ScoringWeights.concept()})
    store.write_shard(gen, 0, [_feed(u, u) for u in USERS] + [("concept", _feed(u, f"v-{u}")) for u in USERS])
    store.write_classic(gen, _feed("any", "classic"))
    store.commit_generation(gen, expected_shards=1)
    store.client.set(f"{shop['prefix']}{RUNNING_KEY}", f"[{VARIANTS.model_dump_json()}]")
    store.client.close()
    return shop


def _variant_bodies(client: TestClient) -> dict[str, dict]:
    return {u: client.get(f"/v1/users/{u}/feed").json() for u in USERS}


def _expected_feed(arm: str) -> tuple[str, str]:
    """(the feed an arm of VARIANTS is served, how the first item of that feed begins)."""
    return {"control": ("classic", "classic-"), "concept": ("variant:concept", "v-"), "ghost": ("personalised", "u")}[
        arm
    ]


def test_a_variant_arm_gets_the_variant_feed_and_a_missing_variant_the_personalised_one(variant_shop) -> None:
    with _client(variant_shop) as client:
        bodies = _variant_bodies(client)
    arms = {u: assign(VARIANTS, u) for u in USERS}
    assert set(arms.values()) == {"control", "concept", "ghost"}
    for u, body in bodies.items():
        feed, head = _expected_feed(arms[u])
        assert (body["arm"], body["feed"]) == (arms[u], feed)
        assert body["items"][0]["item_id"].startswith(head) and body["personalised"] == (feed != "classic")

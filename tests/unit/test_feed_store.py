"""The Redis feed store: generations, atomic swaps, refusal of incomplete generations, consistent reads during
swaps, expiry of old generations, rollback, archives and republishing, against an in-process fakeredis
(tests/integration/test_feed_store.py runs them again against the real Redis)."""

from __future__ import annotations

import threading
import uuid

import pytest

from ltvfeed.errors import UserError
from ltvfeed.serving.config import FeedConfig, ScoringWeights
from ltvfeed.serving.feed import Feed, FeedItem
from ltvfeed.serving.feed_archive import archived_generations, feed_archive_dir, read_archive, republish
from ltvfeed.serving.feed_store import FeedStore, GenerationError, IncompleteGeneration


@pytest.fixture
def redis_backend():
    """The Redis the store talks to: an in-process fakeredis here, the real server in the integration half."""
    import fakeredis

    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


@pytest.fixture
def store(redis_backend, run_id, tmp_path):
    """A store with small batches (several round trips per shard) archiving under the test's state dir."""
    client = redis_backend
    prefix = f"ltvfeed_test_{run_id}:{uuid.uuid4().hex[:6]}:"
    archive = feed_archive_dir(tmp_path, prefix)
    s = FeedStore(client, prefix, superseded_ttl_s=120, write_batch_size=3, archive_dir=archive)
    yield s
    keys = list(s.client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        s.client.delete(*keys)


def make_feed(user: str, tag: str, n: int = 4) -> Feed:
    """A feed whose every item names ``tag``, so a reader can tell which write it came from."""
    return Feed(user, tuple(FeedItem(f"{tag}-item{i}", 1.0 - i / 10, 0.5, 0.25, 1.0) for i in range(n)))


def publish(store: FeedStore, tag: str, users: list[str], shards: int = 2, n: int = 4) -> str:
    gen = store.begin_generation(model_versions={"ltv": tag}, config=FeedConfig())
    for shard in range(shards):
        store.write_shard(gen, shard, [make_feed(u, tag, n) for u in users[shard::shards]])
    store.write_classic(gen, make_feed("anyone", f"{tag}-classic", n))
    store.commit_generation(gen, expected_shards=shards)
    return gen


USERS = [f"u{i}" for i in range(7)]


def test_write_commit_read(store):
    assert store.read_feed("u0") is None and store.current_generation() is None
    config = FeedConfig(weights=ScoringWeights.preset("concept"))  # not the default: the stored weights are the run's
    gen = store.begin_generation(model_versions={"ltv": "3", "propensity": "7"}, config=config)
    assert store.write_shard(gen, 0, [make_feed(u, "a") for u in USERS[:4]]) == 4
    assert store.write_shard(gen, 1, [make_feed(u, "a") for u in USERS[4:]]) == 3
    store.write_classic(gen, make_feed("x", "classic"))
    assert store.read_feed("u0") is None  # written but not committed: not served
    meta = store.commit_generation(gen, expected_shards=2)
    assert store.current_generation() == gen
    assert (meta.status, meta.n_users, meta.shards_done, meta.expected_shards) == ("committed", 7, {0: 4, 1: 3}, 2)
    assert meta.model_versions == {"ltv": "3", "propensity": "7"}
    assert meta.weights == {"commercial": 0.5, "purchase": 0.4, "diversity": 0.1} and meta.has_classic
    feed = store.read_feed("u5")
    expected = make_feed("u5", "a")
    assert feed.generation == gen and feed.item_ids == expected.item_ids
    assert [it.score for it in feed.items] == pytest.approx([it.score for it in expected.items])
    assert feed.items[0].purchase == 0.25 and feed.items[0].diversity == 1.0
    many = store.read_feeds(["u1", "u6", "nobody"])
    assert many["nobody"] is None and many["u6"].item_ids == expected.item_ids
    assert store.read_classic().item_ids == make_feed("x", "classic").item_ids
    with pytest.raises(GenerationError, match="committed"):
        store.write_shard(gen, 0, [make_feed("u0", "late")])


def test_commit_refuses_missing_shards_and_classic(store):
    old = publish(store, "old", USERS)
    gen = store.begin_generation()
    store.write_shard(gen, 0, [make_feed("u0", "new")])
    store.write_shard(gen, 2, [make_feed("u2", "new")])
    with pytest.raises(IncompleteGeneration, match=r"shard\(s\) \[1\] not written.*classic feed not written"):
        store.commit_generation(gen, expected_shards=3)
    assert store.current_generation() == old and store.read_feed("u0").item_ids[0] == "old-item0"
    store.write_shard(gen, 1, [])
    store.write_classic(gen, make_feed("x", "new-classic"))
    with pytest.raises(IncompleteGeneration, match="only 2 expected"):
        store.commit_generation(gen, expected_shards=2)
    store.commit_generation(gen, expected_shards=3)
    assert store.read_feed("u0").item_ids[0] == "new-item0"
    assert store.read_feed("u3") is None  # not in the new generation: no stale feed from the old one
    with pytest.raises(GenerationError, match="cannot be committed again"):
        store.commit_generation(gen, expected_shards=3)


def test_readers_see_one_whole_committed_generation_during_swaps(store):
    publish(store, "g0", USERS)
    committed: list[str] = [store.current_generation()]
    problems: list[str] = []
    seen: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            feed = store.read_feed("u3")
            batch = store.read_feeds(USERS)
            for f in [feed, *batch.values()]:
                if f is None:
                    problems.append("missing feed")
                    continue
                tags = {i.split("-item")[0] for i in f.item_ids}
                if len(f.items) != 4 or len(tags) != 1:
                    problems.append(f"partial or mixed feed {f.item_ids}")
            if len({f.generation for f in batch.values() if f}) != 1:
                problems.append("feeds of one read_feeds call from different generations")
            if feed is not None:
                seen.append(feed.generation)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for round_ in range(1, 16):
            pending = store.begin_generation()  # a generation being written must never be visible
            store.write_shard(pending, 0, [make_feed(u, f"pending{round_}") for u in USERS])
            committed.append(publish(store, f"g{round_}", USERS))
            store.discard_generation(pending)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not problems, problems[:5]
    assert len(seen) > 15, "the reader barely ran"
    assert set(seen) <= set(committed)
    order = [committed.index(g) for g in seen]
    assert order == sorted(order), "a reader went back to an older generation"
    assert store.read_feed("u3").generation == committed[-1]


def test_superseded_generations_expire_and_rollback(store):
    g1 = publish(store, "g1", USERS)
    g2 = publish(store, "g2", USERS)
    assert store.client.ttl(store.feed_key(g1, "u0")) == -1  # kept: current + one to roll back to
    g3 = publish(store, "g3", USERS)
    assert store.committed_generations() == [g3, g2]
    for key in (store.feed_key(g1, "u0"), store.classic_key(g1), store.meta_key(g1)):
        assert 0 < store.client.ttl(key) <= 120
    for key in (store.feed_key(g2, "u0"), store.feed_key(g3, "u6"), store.classic_key(g2)):
        assert store.client.ttl(key) == -1
    assert store.generation_meta(g2).status == "superseded"
    assert store.rollback() == g2
    assert store.read_feed("u0").generation == g2 and store.read_classic().generation == g2
    assert 0 < store.client.ttl(store.feed_key(g3, "u0")) <= 120
    assert store.generation_meta(g3).status == "rolled_back"
    with pytest.raises(GenerationError, match="no earlier generation"):
        store.rollback()


def test_bad_generation_ids_and_reserved_users(store):
    with pytest.raises(GenerationError, match="invalid"):
        store.begin_generation(generation="gen")
    with pytest.raises(GenerationError, match="never begun"):
        store.write_shard("nope", 0, [])
    gen = store.begin_generation(generation="run-1")
    with pytest.raises(GenerationError, match="already exists"):
        store.begin_generation(generation="run-1")
    with pytest.raises(UserError, match="reserved"):
        store.write_shard(gen, 0, [make_feed("__classic__", "x")])


def lose_everything(store: FeedStore) -> None:
    keys = list(store.client.scan_iter(match=f"{store.prefix}*", count=1000))
    store.client.delete(*keys)


def test_committed_generations_are_archived_and_republished_after_redis_lost_them(store):
    g1 = publish(store, "g1", USERS)
    g2 = publish(store, "g2", USERS)
    pending = store.begin_generation()  # never committed: never archived
    store.write_shard(pending, 0, [make_feed("u0", "pending")])
    g3 = publish(store, "g3", USERS)
    assert archived_generations(store.archive_dir) == [g2, g3]  # keep_generations (2) newest
    lose_everything(store)
    assert store.current_generation() is None and store.read_feed("u0") is None
    restored = republish(store, store.archive_dir)
    assert (restored.generation, restored.n_feeds) == (g3, len(USERS) + 1)
    assert store.current_generation() == g3 and store.committed_generations() == [g3]
    for user in USERS:
        assert store.read_feed(user).item_ids == make_feed(user, "g3").item_ids
        assert store.client.ttl(store.feed_key(g3, user)) == -1
    assert store.read_classic().item_ids == make_feed("x", "g3-classic").item_ids
    meta = store.generation_meta(g3)
    assert (meta.status, meta.n_users, meta.shards_done, meta.model_versions) == (
        "committed",
        len(USERS),
        {0: 4, 1: 3},
        {"ltv": "g3"},
    )
    assert "restored_at" in meta.other
    republish(store, store.archive_dir, g3)  # idempotent
    assert store.committed_generations() == [g3] and store.read_feed("u1").generation == g3
    republish(store, store.archive_dir, g2)  # an older archived one: served, the current one superseded
    assert store.current_generation() == g2 and store.generation_meta(g3).status == "superseded"
    assert store.read_feed("u1").item_ids == make_feed("u1", "g2").item_ids
    with pytest.raises(UserError, match=f"generation {g1} is not archived.*archived: {g2}, {g3}"):
        read_archive(store.archive_dir, g1)
    with pytest.raises(GenerationError, match="never committed"):
        store.restore_generation(pending, {"status": "open"}, [])


def test_republish_without_archives_says_so(store):
    with pytest.raises(UserError, match="no archived feed generation under"):
        republish(store, store.archive_dir)
    store.archive_dir.mkdir(parents=True)
    (store.archive_dir / "broken.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="cannot be read"):
        republish(store, store.archive_dir)
    assert store.current_generation() is None


def test_a_generation_that_cannot_be_archived_is_still_committed(store, caplog):
    """The copy is a backup: failing to write it (here the archive folder's place is taken by a file) is logged,
    and the generation is served all the same."""
    store.archive_dir.parent.mkdir(parents=True, exist_ok=True)
    store.archive_dir.write_text("not a folder")
    gen = publish(store, "a", USERS)
    assert store.current_generation() == gen and store.generation_meta(gen).status == "committed"
    assert "could not be archived" in caplog.text


def publish_with_variant(store: FeedStore, tag: str, users: list[str] = USERS) -> str:
    """A generation with the variant ``concept``, whose feeds' items name ``<tag>-v``."""
    gen = store.begin_generation(config=FeedConfig(), variants={"concept": ScoringWeights.concept()})
    for shard in range(2):
        part = users[shard::2]
        store.write_shard(
            gen, shard, [make_feed(u, tag) for u in part] + [("concept", make_feed(u, f"{tag}-v")) for u in part]
        )
    store.write_classic(gen, make_feed("x", f"{tag}-classic"))
    store.commit_generation(gen, expected_shards=2)
    return gen


def test_variant_feeds_commit_expire_and_republish_with_the_generation(store):
    gen = store.begin_generation(config=FeedConfig(), variants={"concept": ScoringWeights.concept()})
    with pytest.raises(IncompleteGeneration, match="variant feeds"):  # a shard without its variant feeds
        store.write_shard(gen, 0, [make_feed("u0", "a")])
    with pytest.raises(UserError, match="not one of"):
        store.write_shard(gen, 0, [("other", make_feed("u0", "a"))])
    store.write_shard(gen, 0, [make_feed("u0", "a"), ("concept", make_feed("u0", "a-v"))])
    store.write_classic(gen, make_feed("x", "classic"))
    assert store.client.exists(store.feed_key(gen, "u0", "concept"))
    assert store.read_feed("u0", "concept") is None  # written but not committed: not served
    meta = store.commit_generation(gen, expected_shards=1)
    assert meta.variants == {"concept": {"commercial": 0.5, "purchase": 0.4, "diversity": 0.1}}
    assert meta.n_users == 1 and store.read_feed("u0", "concept").item_ids == make_feed("u0", "a-v").item_ids
    assert store.read_feed("u0").item_ids == make_feed("u0", "a").item_ids
    assert store.read_feed("u0", "missing") is None
    g2, g3 = publish_with_variant(store, "g2"), publish_with_variant(store, "g3")
    assert 0 < store.client.ttl(store.feed_key(gen, "u0", "concept")) <= 120  # retired with the rest of it
    assert store.client.ttl(store.feed_key(g2, "u0", "concept")) == -1
    lose_everything(store)
    restored = republish(store, store.archive_dir)
    assert (restored.generation, restored.n_feeds) == (g3, 2 * len(USERS) + 1)
    assert store.read_feed("u5", "concept").item_ids == make_feed("u5", "g3-v").item_ids
    assert store.generation_meta(g3).variants["concept"]["commercial"] == 0.5
    pending = store.begin_generation(variants={"concept": ScoringWeights()})
    store.write_shard(pending, 0, [make_feed("u0", "p"), ("concept", make_feed("u0", "p-v"))])
    assert store.discard_generation(pending) == 3  # both feeds and the metadata
    assert not store.client.exists(store.feed_key(pending, "u0", "concept"))

"""The Redis feed store against the real Redis: the tests of tests/unit/test_feed_store.py (run there against an
in-process fakeredis) run again here on the stack's Redis, and ``ltvfeed feeds republish`` runs as people run it."""

from __future__ import annotations

import uuid

import pytest

from ltvfeed.serving.feed_archive import feed_archive_dir
from ltvfeed.serving.feed_store import FeedStore
from tests.unit import test_feed_store as unit_half
from tests.unit.test_feed_store import USERS, lose_everything, make_feed, publish

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_backend(stack) -> str:
    return stack.redis_url


# the unit half's fixture and tests, on the real Redis (its ``store`` requests ``redis_backend`` above)
store = unit_half.store
test_a_generation_that_cannot_be_archived_is_still_committed = (
    unit_half.test_a_generation_that_cannot_be_archived_is_still_committed
)
test_bad_generation_ids_and_reserved_users = unit_half.test_bad_generation_ids_and_reserved_users
test_commit_refuses_missing_shards_and_classic = unit_half.test_commit_refuses_missing_shards_and_classic
test_committed_generations_are_archived_and_republished_after_redis_lost_them = (
    unit_half.test_committed_generations_are_archived_and_republished_after_redis_lost_them
)
test_readers_see_one_whole_committed_generation_during_swaps = (
    unit_half.test_readers_see_one_whole_committed_generation_during_swaps
)
test_republish_without_archives_says_so = unit_half.test_republish_without_archives_says_so
test_superseded_generations_expire_and_rollback = unit_half.test_superseded_generations_expire_and_rollback
test_variant_feeds_commit_expire_and_republish_with_the_generation = (
    unit_half.test_variant_feeds_commit_expire_and_republish_with_the_generation
)
test_write_commit_read = unit_half.test_write_commit_read


@pytest.mark.integration
def test_feeds_republish_command(stack, run_id, tmp_path):
    """`ltvfeed feeds republish` as people run it: the archive `feeds generate` left in the state dir."""
    import os
    import shutil
    import subprocess
    import sys

    prefix = f"ltvfeed_test_{run_id}:cli{uuid.uuid4().hex[:6]}:"
    store = FeedStore(stack.redis_url, prefix, archive_dir=feed_archive_dir(tmp_path, prefix))
    gen = publish(store, "c", USERS)
    lose_everything(store)
    env = {**os.environ, **stack.env(), "LTVFEED_REDIS_PREFIX": prefix, "LTVFEED_STATE_DIR": str(tmp_path)}
    exe = shutil.which("ltvfeed", path=os.path.dirname(sys.executable)) or "ltvfeed"
    try:
        done = subprocess.run([exe, "feeds", "republish"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"republished {gen}: {len(USERS) + 1} feeds" in done.stdout
        assert store.read_feed("u4").item_ids == make_feed("u4", "c").item_ids
        bad = subprocess.run([exe, "feeds", "republish", "nope"], env=env, capture_output=True, text=True, timeout=120)
        assert bad.returncode != 0 and "generation nope is not archived" in bad.stdout + bad.stderr
        assert "Traceback" not in bad.stdout + bad.stderr
    finally:
        lose_everything(store)

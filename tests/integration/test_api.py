"""The feed API against the real Redis: the Redis-backed tests of tests/unit/test_api.py (run there against an
in-process fakeredis) run again here on the stack's Redis, and ``ltvfeed serve`` runs as its own process."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid

import pytest

from ltvfeed.serving.feed_store import FeedStore
from tests.unit import test_api as unit_half
from tests.unit.test_api import closed_port, item_ids, lose_everything, make_feed, publish, raw_status

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url(stack) -> str:
    return stack.redis_url


# the unit half's fixtures and tests, on the real Redis (its fixtures request ``redis_url`` above)
prefix, writer, gate, api = unit_half.prefix, unit_half.writer, unit_half.gate, unit_half.api
test_api_restarted_while_redis_is_down_serves_the_kept_classic_feed = (
    unit_half.test_api_restarted_while_redis_is_down_serves_the_kept_classic_feed
)
test_degraded_answers_skip_the_freshness_filter = unit_half.test_degraded_answers_skip_the_freshness_filter
test_freshness_filter_runs_before_truncation_and_its_failure_is_not_fatal = (
    unit_half.test_freshness_filter_runs_before_truncation_and_its_failure_is_not_fatal
)
test_generation_lost_from_redis_is_served_degraded_then_republished = (
    unit_half.test_generation_lost_from_redis_is_served_degraded_then_republished
)
test_hanging_redis_costs_one_timeout_then_recovers = unit_half.test_hanging_redis_costs_one_timeout_then_recovers
test_metrics_expose_requests_latency_fallbacks_and_generation = (
    unit_half.test_metrics_expose_requests_latency_fallbacks_and_generation
)
test_n_is_respected_and_validated = unit_half.test_n_is_respected_and_validated
test_personal_feed_with_components_and_generation = unit_half.test_personal_feed_with_components_and_generation
test_readiness = unit_half.test_readiness
test_redis_refused_gives_degraded_classic_fast = unit_half.test_redis_refused_gives_degraded_classic_fast
test_unknown_user_gets_the_classic_feed_flagged = unit_half.test_unknown_user_gets_the_classic_feed_flagged


@pytest.mark.integration
def test_ltvfeed_serve_command_serves_the_committed_generation(stack, run_id, tmp_path):
    """The command people run: `ltvfeed serve` as its own process, configured only through the environment."""
    import shutil
    import subprocess
    import sys

    import httpx

    prefix = f"ltvfeed_test_{run_id}:serve{uuid.uuid4().hex[:6]}:"
    writer = FeedStore(stack.redis_url, prefix)
    gen = publish(writer, "s")
    port = closed_port()
    env = {
        **os.environ,
        **stack.env(),
        "LTVFEED_REDIS_PREFIX": prefix,
        "LTVFEED_STATE_DIR": str(tmp_path / "state"),
        "LTVFEED_API_FRESHNESS": "false",
    }
    exe = shutil.which("ltvfeed", path=os.path.dirname(sys.executable)) or "ltvfeed"
    cmd = [exe, "serve", "--port", str(port), "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "exited"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "ltvfeed serve did not become ready within 60 s"
            time.sleep(0.3)
        body = httpx.get(f"{base}/v1/users/u2/feed?n=3", timeout=5).json()
        assert (body["generation"], body["personalised"], body["n"]) == (gen, True, 3)
        assert item_ids(body) == make_feed("u2", "s-u2").item_ids[:3]
        unknown = httpx.get(f"{base}/v1/users/nobody/feed", timeout=5).json()
        assert unknown["personalised"] is False and unknown["fallback"] and item_ids(unknown)[0] == "s-classic-i0"
        assert "ltvfeed_" in httpx.get(f"{base}/metrics", timeout=5).text
        with socket.create_connection(("127.0.0.1", port)) as hostile:  # the head limit is on in what ships
            hostile.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
            assert raw_status(hostile) == 431
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lose_everything(writer)
    assert f"http://127.0.0.1:{port}" in out  # it said where it listens

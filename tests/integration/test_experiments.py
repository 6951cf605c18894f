"""The experiment registry on the real servers (life cycle, ramp, overlap) and the command line as a user drives
it. The read-out on planted effects is in tests/unit/test_experiments.py."""

from __future__ import annotations

import pytest

from ltvfeed.errors import UserError
from tests.unit.test_experiments import _users

# -- registry (real PostgreSQL + Redis) --------------------------------------------------------------------------


@pytest.mark.integration
def test_registry_life_cycle_ramp_and_overlap(stack, warehouse_dsn: str) -> None:
    import redis

    from ltvfeed.experiments import registry
    from ltvfeed.experiments.assignment import assign

    arms = [
        registry.FeedArm(name="control", weight=1, feed="classic"),
        registry.FeedArm(name="treatment", weight=1, feed="personalised"),
    ]
    first = registry.Experiment(name="feed-v1", salt="s1", arms=arms, traffic_share=0.1)
    registry.create(warehouse_dsn, first)
    with pytest.raises(UserError, match="already exists"):
        registry.create(warehouse_dsn, first)
    registry.start(warehouse_dsn, "feed-v1")
    with pytest.raises(UserError, match="only a draft"):
        registry.start(warehouse_dsn, "feed-v1")
    started = registry.get(warehouse_dsn, "feed-v1").experiment
    before = {f"u{i}": assign(started, f"u{i}") for i in range(5000)}
    registry.ramp(warehouse_dsn, "feed-v1", 0.5)
    ramped = registry.get(warehouse_dsn, "feed-v1").experiment
    assert all(assign(ramped, u) == a for u, a in before.items() if a is not None)
    with pytest.raises(UserError, match="lowering traffic"):
        registry.ramp(warehouse_dsn, "feed-v1", 0.2)
    second = registry.Experiment(name="feed-v2", salt="s2", arms=arms)
    registry.create(warehouse_dsn, second)
    with pytest.raises(UserError, match="overlaps running experiment 'feed-v1'"):
        registry.start(warehouse_dsn, "feed-v2")
    client = redis.Redis.from_url(stack.redis_url)
    prefix = f"{stack.settings.redis_prefix}exp_{warehouse_dsn[-6:]}:"
    try:
        assert registry.publish_running(warehouse_dsn, client, prefix) == 1
        assert [e.name for e in registry.load_running(client, prefix)] == ["feed-v1"]
        registry.stop(warehouse_dsn, "feed-v1")
        assert registry.publish_running(warehouse_dsn, client, prefix) == 0
    finally:
        client.delete(f"{prefix}{registry.RUNNING_KEY}")
    with pytest.raises(UserError, match="no experiment"):
        registry.get(warehouse_dsn, "nope")
    with pytest.raises(ValueError, match="unknown metric"):
        registry.Experiment(name="x", salt="s", arms=arms, primary_metric="clicks_per_hour")


@pytest.mark.integration
def test_cli_create_start_report(stack, tmp_path) -> None:
    """The command line as a user drives it, in its own processes, on its own warehouse database."""
    import os
    import subprocess
    import sys
    import uuid

    from ltvfeed.db import drop_database

    db = f"ltvfeed_test_expcli_{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        **stack.env(),
        "LTVFEED_WAREHOUSE_DB": db,
        "LTVFEED_STATE_DIR": str(tmp_path),
        "LTVFEED_REDIS_PREFIX": f"expcli_{uuid.uuid4().hex[:6]}:",
    }

    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-m", "ltvfeed.cli", *args], env=env, capture_output=True, text=True)
        assert (out.returncode == 0) == ok, out.stdout + out.stderr
        return out

    metrics = tmp_path / "metrics.csv"
    _users(3000, 3000, conversion_lift=0.05, seed=7).to_csv(metrics, index=False)
    try:
        cli("experiments", "create", "feed-v1", "--traffic", "0.2")
        bad = cli("experiments", "create", "x", "--arms", "a:weird=1,b:classic=1", ok=False)
        assert "feed must be one of" in bad.stderr and "Traceback" not in bad.stderr
        bad = cli("experiments", "create", "x", "--arms", "a:classic=1,b:variant:Big Bet=1", ok=False)
        assert "variant name 'Big Bet' is invalid" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        cli("experiments", "create", "feed-v3", "--arms", "control:classic=1,concept:variant:concept=1")
        assert "concept:variant:concept=1" in cli("experiments", "list").stdout
        assert "running experiment(s) published" in cli("experiments", "start", "feed-v1").stdout
        assert "traffic 50%" in cli("experiments", "ramp", "feed-v1", "--traffic", "0.5").stdout
        assert "lowering traffic" in cli("experiments", "ramp", "feed-v1", "--traffic", "0.1", ok=False).stderr
        report = cli("experiments", "report", "feed-v1", "--metrics", str(metrics))
        assert report.stdout.startswith("treatment wins")
        assert (tmp_path / "experiments" / "feed-v1.html").read_text().count("data:image/png") == 2
        assert "running" in cli("experiments", "list").stdout
    finally:
        import redis

        client = redis.Redis.from_url(stack.redis_url)
        for key in client.scan_iter(match=f"{env['LTVFEED_REDIS_PREFIX']}*"):
            client.delete(key)
        drop_database(stack.pg_dsn, db)

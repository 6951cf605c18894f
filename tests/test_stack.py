import socket

import psycopg
import pytest
import redis

from ltvfeed.db import DatabaseUnavailable, check_server
from ltvfeed.infra import embedded
from ltvfeed.infra.stack import RedisUnavailable, down, status, up
from ltvfeed.settings import Settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wrong_dsn_is_one_actionable_line():
    port = _closed_port()
    with pytest.raises(DatabaseUnavailable) as info:
        check_server(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    msg = str(info.value)
    assert "\n" not in msg and f"127.0.0.1:{port}" in msg and "LTVFEED_PG_DSN" in msg


def test_wrong_redis_url_is_actionable(tmp_path):
    port = _closed_port()
    settings = Settings(state_dir=tmp_path, pg_dsn=None, redis_url=f"redis://127.0.0.1:{port}/0")
    rows = dict((name, (ok, detail)) for name, ok, detail in status(settings))
    assert rows["redis"][0] is False and "LTVFEED_REDIS_URL" in rows["redis"][1]
    assert rows["postgres"][0] is False  # embedded, never started in this state dir
    with pytest.raises(RedisUnavailable):
        from ltvfeed.infra.stack import _check_redis

        _check_redis(f"redis://127.0.0.1:{port}/0")


@pytest.mark.integration
def test_embedded_stack_starts_persists_and_stops(tmp_path):
    """A fresh machine: no servers configured, real embedded ones start, keep data across restarts."""
    settings = Settings(state_dir=tmp_path / "state", pg_dsn=None, redis_url=None)
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

"""The stack's errors without a server: a wrong DSN or Redis URL is one actionable line. The embedded servers
themselves are in tests/integration/test_stack.py."""

import socket

import pytest

from ltvfeed.db import DatabaseUnavailable, check_server
from ltvfeed.infra.stack import RedisUnavailable, status
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

"""The collector wired to a running stack: its schema, credentials, writer, rate limiter and real-time pushes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from ltvfeed.collector.app import CollectorLimits, create_collector_app
from ltvfeed.collector.partners import CredentialCache, ensure_collector_schema, fernet
from ltvfeed.collector.ratelimit import RateLimiter
from ltvfeed.collector.realtime import Channel, RealtimePusher, any_event, is_order
from ltvfeed.collector.writer import GroupCommitWriter

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack


def realtime_channels(stack: Stack) -> list[Channel]:
    """The online views the collector keeps current: recent purchases (orders) and live activity (everything)."""
    from ltvfeed.features.live_activity import push_live_activity
    from ltvfeed.features.recent_purchases import push_recent_purchases

    return [
        Channel("recent_purchases", is_order, lambda users: push_recent_purchases(stack, users)),
        Channel("live_activity", any_event, lambda users: push_live_activity(stack, users)),
    ]


def create_app_for_stack(stack: Stack, *, realtime: bool = True) -> FastAPI:
    import redis.asyncio as aredis

    settings = stack.settings
    ensure_collector_schema(stack.warehouse_dsn)
    cache = CredentialCache(stack.warehouse_dsn, fernet(settings))
    pusher = None
    if realtime:
        pusher = RealtimePusher(realtime_channels(stack)).start()
    writer = GroupCommitWriter(stack.warehouse_dsn, on_commit=pusher.after_commit if pusher else None).start()
    client = aredis.Redis.from_url(stack.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    limiter = RateLimiter(
        client,
        settings.redis_prefix,
        settings.collector_rate_limit_per_s,
        fail_open=settings.collector_rate_limit_fail_open,
    )
    app = create_collector_app(
        cache.get,
        writer,
        limiter,
        CollectorLimits(replay_window_s=settings.collector_replay_window_s),
        on_shutdown=pusher.close if pusher else None,
    )
    app.state.pusher = pusher
    app.state.writer = writer
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: the stack from the environment (``ltvfeed collect --workers``)."""
    from ltvfeed.infra.stack import up
    from ltvfeed.settings import Settings

    return create_app_for_stack(up(Settings()))

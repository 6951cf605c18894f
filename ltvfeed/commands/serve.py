"""``ltvfeed serve``: the feed API under uvicorn, on the running stack's Redis."""

from __future__ import annotations

import os

import typer

from ltvfeed.settings import get_settings


def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 exposes it)."),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="TCP port. Default: the api_port setting (LTVFEED_API_PORT, 8000)."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, max=64, help="Worker processes. Each has its own /metrics counters."
    ),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log every request."),
) -> None:
    """Serve GET /v1/users/{user_id}/feed, /healthz, /readyz, /metrics and the OpenAPI docs at /docs.

    Feeds are filtered at request time for items bought since their generation when the feature store has the
    'freshness' service (set LTVFEED_API_FRESHNESS=false to turn it off); each worker logs whether it is on.
    A request head over 32 KiB is answered 431, one not received within 10 s 408 (see serving/http_limits.py)."""
    import uvicorn

    from ltvfeed.infra.stack import up
    from ltvfeed.serving.http_limits import LimitedHttpToolsProtocol

    settings = get_settings()
    stack = up(settings)
    port = port or settings.api_port
    typer.echo(
        f"feed API on http://{host}:{port} (docs /docs), Redis {stack.redis_url}, prefix {settings.redis_prefix}"
    )
    if workers == 1:
        from ltvfeed.serving.api import create_app_for_stack

        app = create_app_for_stack(stack)
        typer.echo(app.state.freshness_note)
        uvicorn.run(app, host=host, port=port, access_log=access_log, http=LimitedHttpToolsProtocol)
        return
    # Worker processes build their own app from the environment: point them at the Redis found here.
    os.environ.update(stack.env())
    uvicorn.run(
        "ltvfeed.serving.api:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        http=LimitedHttpToolsProtocol,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)

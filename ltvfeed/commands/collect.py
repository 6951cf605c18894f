"""``ltvfeed collect`` (the partner event collector) and ``ltvfeed partners add|list|rotate|revoke``."""

from __future__ import annotations

import os

import typer

from ltvfeed.settings import get_settings

partners_app = typer.Typer(help="Partners allowed to send events to the collector, and their signing secrets.")


def _stack():
    from ltvfeed.infra.stack import up

    return up(get_settings())


def collect_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 exposes it)."),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="TCP port. Default: collector_port (LTVFEED_COLLECTOR_PORT, 8001)."
    ),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes (each commits on its own)."),
) -> None:
    """Serve POST /v1/events (signed batches of events, stored exactly once) and /v1/schema/events.json.

    Its own process, so ingest load never slows the feed API. A 200 is sent only after the events are committed
    to PostgreSQL; when the warehouse cannot commit, 503 and nothing is kept (retrying is safe)."""
    import uvicorn

    from ltvfeed.collector.partners import ensure_collector_schema
    from ltvfeed.serving.http_limits import LimitedHttpToolsProtocol

    stack = _stack()
    ensure_collector_schema(stack.warehouse_dsn)
    port = port or stack.settings.collector_port
    typer.echo(
        f"event collector on http://{host}:{port}/v1/events (docs /docs), warehouse {stack.settings.warehouse_db}"
    )
    os.environ.update(stack.env())
    uvicorn.run(
        "ltvfeed.collector.service:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        http=LimitedHttpToolsProtocol,
    )


@partners_app.command("add")
def add_cmd(
    partner_id: str = typer.Argument(..., help="Partner id: letters, digits, '_', '.', '-' (1-64)"),
    rate_limit: int = typer.Option(None, "--rate-limit", min=1, help="Events/s for this partner (default: setting)"),
) -> None:
    """Register a partner and print its secret once (it is stored only encrypted)."""
    from ltvfeed.collector.partners import add_partner, ensure_collector_schema, fernet

    stack = _stack()
    ensure_collector_schema(stack.warehouse_dsn)
    secret = add_partner(stack.warehouse_dsn, fernet(stack.settings), partner_id, rate_limit)
    typer.echo(f"partner {partner_id} added; its secret (shown once, store it now):\n{secret}")


@partners_app.command("rotate")
def rotate_cmd(partner_id: str = typer.Argument(..., help="Partner id")) -> None:
    """Issue a new secret; the old one keeps working for collector_rotation_grace_s (default 24 h)."""
    from ltvfeed.collector.partners import ensure_collector_schema, fernet, rotate_partner

    stack = _stack()
    ensure_collector_schema(stack.warehouse_dsn)
    grace = stack.settings.collector_rotation_grace_s
    secret = rotate_partner(stack.warehouse_dsn, fernet(stack.settings), partner_id, grace)
    typer.echo(f"partner {partner_id}: new secret (shown once); the old one stays valid for {grace} s:\n{secret}")


@partners_app.command("revoke")
def revoke_cmd(partner_id: str = typer.Argument(..., help="Partner id")) -> None:
    """Stop accepting the partner's requests (within seconds)."""
    from ltvfeed.collector.partners import ensure_collector_schema, revoke_partner

    stack = _stack()
    ensure_collector_schema(stack.warehouse_dsn)
    revoke_partner(stack.warehouse_dsn, partner_id)
    typer.echo(f"partner {partner_id} revoked")


@partners_app.command("list")
def list_cmd() -> None:
    """Partners with status, creation and rotation times (never secrets)."""
    from ltvfeed.collector.partners import ensure_collector_schema, list_partners

    stack = _stack()
    ensure_collector_schema(stack.warehouse_dsn)
    partners = list_partners(stack.warehouse_dsn)
    if not partners:
        typer.echo("no partners yet (ltvfeed partners add ID)")
    for p in partners:
        rotated = f"{p.rotated_at:%Y-%m-%d %H:%M}" if p.rotated_at else "-"
        limit = p.rate_limit_per_s or "default"
        typer.echo(
            f"{p.partner_id:24} {p.status:8} created {p.created_at:%Y-%m-%d %H:%M}  rotated {rotated}  limit {limit}"
        )


def register(app: typer.Typer) -> None:
    app.command("collect")(collect_cmd)
    app.add_typer(partners_app, name="partners")

"""``ltvfeed feeds generate|show|generations|rollback|republish|discard``: batch feed generations in Redis, by
hand.

``generate`` runs exactly the ``feed_generation`` DAG's task functions, all shards in this process in turn."""

from __future__ import annotations

import json

import typer

from ltvfeed.commands.options import date_option
from ltvfeed.errors import UserError
from ltvfeed.serving.config import describe_presets
from ltvfeed.settings import get_settings

feeds_app = typer.Typer(help="Personalised feeds: generate a generation, inspect it, roll back.")


def _store():
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.feed_tasks import feed_store

    return feed_store(up(get_settings()))


@feeds_app.command("generate")
def generate_cmd(
    as_of: str | None = typer.Option(
        None, "--as-of", help="Cutoff date YYYY-MM-DD (a marts snapshot). Default: the newest snapshot."
    ),
    shards: int = typer.Option(4, "--shards", help="Shards (the DAG runs them as parallel tasks; here in turn)."),
    n: int = typer.Option(10, "--n", help="Feed length."),
    k: int = typer.Option(200, "--k", help="Candidates scored per user."),
    weights: str = typer.Option(
        "default",
        "--weights",
        help=f"Named weights, commercial/purchase/diversity ({describe_presets()}; default: the best measured); "
        "--w-c/--w-p/--w-d override single weights of it.",
    ),
    w_c: float | None = typer.Option(None, "--w-c", help="Weight of commercial performance (default: the preset's)."),
    w_p: float | None = typer.Option(None, "--w-p", help="Weight of P(purchase) (default: the preset's)."),
    w_d: float | None = typer.Option(None, "--w-d", help="Weight of diversity (default: the preset's)."),
    chunk_users: int = typer.Option(5000, "--chunk-users", help="Users read and ranked at a time (bounds memory)."),
    propensity_source: str = typer.Option(
        "registry",
        "--propensity-source",
        help="registry: the purchase_propensity champion (required); category_affinity: cold start without one.",
    ),
    view_weight: float = typer.Option(
        0.5, "--view-weight", help="How much similarity to recently viewed items lowers a score (0..1; picks: 1)."
    ),
    purchase_scale: str = typer.Option(
        "user_max",
        "--purchase-scale",
        help="P(purchase) component: user_max (relative to the user's likeliest candidate) or probability (raw).",
    ),
    variant: list[str] = typer.Option(
        [],
        "--variant",
        help="NAME=PRESET or NAME=commercial/purchase/diversity: a further personalised feed of the run, ranked "
        "with those weights (an experiment arm serves it as variant:NAME); repeatable.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Rank every user's feed for one cutoff and serve them as a new generation (atomic swap on commit)."""
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.feed_tasks import run_generation
    from ltvfeed.serving.generation import (
        GenerationParams,
        diversity_from_mapping,
        variants_from_texts,
        weights_from_mapping,
    )
    from ltvfeed.warehouse.snapshots import CATALOGUE_MART, latest_snapshot

    settings = get_settings()
    cutoff = date_option(as_of, "--as-of") if as_of else latest_snapshot(up(settings).warehouse_dsn, CATALOGUE_MART)
    params = GenerationParams(
        as_of=cutoff,
        n=n,
        weights=weights_from_mapping(
            {"preset": weights} | {k: v for k, v in {"w_c": w_c, "w_p": w_p, "w_d": w_d}.items() if v is not None}
        ),
        shards=shards,
        k=k,
        chunk_users=chunk_users,
        propensity_source=propensity_source,
        purchase_scale=purchase_scale,
        diversity=diversity_from_mapping({"view_weight": view_weight}),
        variants=variants_from_texts(variant),
    )
    result = run_generation(settings, params, progress=progress)
    seconds = sum(s["seconds"] for s in result["shards"])
    users = result["n_users"] or 0
    typer.echo(
        f"generation {result['generation']} committed: {users} users, as_of {result['as_of']}, "
        f"model {json.dumps(result['model_versions'])}, {seconds:.1f} s in shards"
        + (f" ({users / seconds:,.0f} users/s)" if seconds > 0 else "")
    )


@feeds_app.command("show")
def show_cmd(
    user_id: str = typer.Argument(..., help="User id."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored feed as JSON."),
) -> None:
    """The user's feed in the served generation, each position with its score components."""
    store = _store()
    generation = store.current_generation()
    if generation is None:
        raise UserError("no feed generation is served yet: run `ltvfeed feeds generate` first")
    feed = store.read_feed(user_id)
    personal = feed is not None
    if feed is None:
        feed = store.read_classic()
        if feed is None:
            raise UserError(f"generation {generation} has no feed for {user_id!r} and no classic feed")
    if as_json:
        typer.echo(feed.to_json())
        return
    kind = "personal" if personal else f"classic (no personal feed for {user_id})"
    typer.echo(f"{user_id}: {kind} feed, generation {generation}")
    typer.echo(f"{'#':>3} {'item':20} {'score':>7} {'commercial':>10} {'purchase':>9} {'diversity':>9}")
    for rank, item in enumerate(feed.items, 1):
        purchase = "-" if item.purchase is None else f"{item.purchase:.4f}"
        typer.echo(
            f"{rank:>3} {item.item_id:20} {item.score:7.4f} {item.commercial:10.4f} {purchase:>9} {item.diversity:9.4f}"
        )


@feeds_app.command("generations")
def generations_cmd() -> None:
    """Kept committed generations, newest (served, *) first, then others still known (open = unfinished)."""
    from ltvfeed.redis_keys import glob_escape

    store = _store()
    current = store.current_generation()
    committed = store.committed_generations()
    head, tail = store.meta_key("G").rsplit("G", 1)  # "<prefix>feed:gen:", ":meta"
    escaped = glob_escape(head)
    others = sorted(key[len(head) : -len(tail)] for key in store.client.scan_iter(match=escaped + "*" + tail))
    shown = committed + [g for g in others if g not in committed]
    if not shown:
        typer.echo("no feed generations yet")
        return
    for generation in shown:
        meta = store.generation_meta(generation)
        if meta is None:
            continue
        marker = "*" if generation == current else " "
        weights = meta.weights or {}
        typer.echo(
            f"{marker} {generation}  {meta.status:10} as_of={meta.extra.get('as_of', '-')}  "
            f"users={meta.n_users if meta.n_users is not None else sum(meta.shards_done.values())}  "
            f"shards={len(meta.shards_done)}/{meta.extra.get('shards', '?')}  generated={meta.generated_at}  "
            f"models={json.dumps(meta.model_versions)}  "
            f"w=({weights.get('commercial')}, {weights.get('purchase')}, {weights.get('diversity')})"
        )


@feeds_app.command("rollback")
def rollback_cmd() -> None:
    """Serve the previous kept generation again (the current one is marked rolled back and expires)."""
    store = _store()
    before = store.current_generation()
    now = store.rollback()
    typer.echo(f"rolled back: serving {now} (was {before})")


@feeds_app.command("republish")
def republish_cmd(
    generation: str | None = typer.Argument(
        None, help="An archived generation id. Default: the newest archived (the last committed)."
    ),
) -> None:
    """Put a committed generation lost from Redis back from its archive (state dir) and serve it; no
    regeneration. Safe to repeat."""
    from ltvfeed.serving.feed_archive import republish

    store = _store()
    before = store.current_generation()
    archive = republish(store, store.archive_dir, generation)
    typer.echo(
        f"republished {archive.generation}: {archive.n_feeds} feeds from {archive.path}; serving it"
        + (f" (was {before})" if before and before != archive.generation else "")
    )


@feeds_app.command("discard")
def discard_cmd(generation: str = typer.Argument(..., help="An open (never committed) generation id.")) -> None:
    """Delete an unfinished generation's keys (a failed run's leftovers)."""
    deleted = _store().discard_generation(generation)
    typer.echo(f"discarded {generation}: {deleted} keys deleted")


def register(app: typer.Typer) -> None:
    app.add_typer(feeds_app, name="feeds")

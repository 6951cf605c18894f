"""What the ``feed_generation`` tasks do, as plain functions of Settings: the DAG calls them one task each (one
mapped task per shard), ``ltvfeed feeds generate`` calls them in one process, tests call them directly.

Between tasks only a small *plan* travels (XCom): the generation id, the parameters and the model versions the
generation began with. Every shard task re-reads its inputs from the warehouse and re-loads the model, so shards
can run on any worker, in any order, and be retried alone (a shard rewrite is idempotent).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from ltvfeed.cutoff import parse_as_of
from ltvfeed.errors import UserError
from ltvfeed.frames.inputs import Catalogue
from ltvfeed.infra.stack import Stack, up
from ltvfeed.serving.feed_store import OPEN, FeedStore
from ltvfeed.serving.generation import (
    GenerationParams,
    diversity_from_mapping,
    generate_feeds,
    generation_classic_feed,
    single_threaded_math,
    variants_from_mapping,
    weights_from_mapping,
)
from ltvfeed.serving.propensity_sources import (
    CATEGORY_AFFINITY,
    PROPENSITY_MODEL,
    CategoryAffinitySource,
    PropensitySource,
    champion_version,
    registry_source,
)
from ltvfeed.settings import Settings
from ltvfeed.warehouse.generation_reads import WarehouseInputs

Plan = dict[str, Any]


def feed_store(stack: Stack) -> FeedStore:
    """The store the API reads: the stack's Redis, the settings' key prefix; committed generations archived."""
    from ltvfeed.serving.feed_archive import feed_archive_dir

    archive = feed_archive_dir(stack.settings.state_dir, stack.settings.redis_prefix)
    return FeedStore(stack.redis_url, stack.settings.redis_prefix, archive_dir=archive)


def propensity_source(stack: Stack, plan: Plan) -> PropensitySource:
    """The plan's source; for the registry, the very model version the generation began with."""
    params = GenerationParams.from_dict(plan["params"])
    if params.propensity_source == CATEGORY_AFFINITY:
        return CategoryAffinitySource()
    return registry_source(stack, params.as_of, expected_version=plan["model_versions"][PROPENSITY_MODEL])


def params_from_dag(params: Mapping[str, Any], as_of: str | date) -> GenerationParams:
    """The DAG's params (``n``, ``weights``, ``shards``, ``K``, ``chunk_users``, ``propensity_source``,
    ``purchase_scale``, ``diversity``, ``variants``)."""
    return GenerationParams(
        as_of=parse_as_of(as_of),
        n=params.get("n", 10),
        weights=weights_from_mapping(params.get("weights")),
        shards=params.get("shards", 4),
        k=params.get("K", 200),
        chunk_users=params.get("chunk_users", 5000),
        propensity_source=params.get("propensity_source", "registry"),
        purchase_scale=params.get("purchase_scale", "user_max"),
        diversity=diversity_from_mapping(params.get("diversity")),
        variants=variants_from_mapping(params.get("variants")),
    )


def _ltv_read(stack: Stack, champion: str, as_of: date) -> dict[str, str]:
    """{LTV model: version} whose predictions of snapshot ``as_of`` the propensity ``champion`` reads as user
    features (empty when it reads none, or the snapshot was not scored)."""
    from ltvfeed.training.propensity.registry import ltv_model_read_by
    from ltvfeed.warehouse.propensity_reads import ltv_scoring_version

    model = ltv_model_read_by(stack, champion)
    version = ltv_scoring_version(stack.warehouse_dsn, as_of, model) if model else None
    if model and version:
        from ltvfeed.training.ltv_scoring import served_scoring

        served = served_scoring(stack, model)  # the LTV alias moved since that scoring: say what re-scores it
        if served.stale:
            logging.getLogger(__name__).warning("%s", served.warning())
    return {model: version} if model and version else {}


def begin_generation(settings: Settings, params: GenerationParams, origin: str = "cli") -> Plan:
    """Check the inputs exist (marts snapshot, champion model), open a generation, return the plan."""
    stack = up(settings)
    with WarehouseInputs(stack.warehouse_dsn, params.as_of) as warehouse:
        n_items = len(warehouse.catalogue_frame(co_bought=False))
        n_users = warehouse.count_users()
    floor = None
    if params.propensity_source == CATEGORY_AFFINITY:
        versions = CategoryAffinitySource().model_versions()
    else:
        from ltvfeed.training.propensity.evaluate import COLD_START
        from ltvfeed.training.propensity.registry import champion_floor

        champion = champion_version(stack)
        versions = {PROPENSITY_MODEL: champion, **_ltv_read(stack, champion, params.as_of)}
        floor = champion_floor(stack, champion)
        if floor["fallback"] == COLD_START and params.baseline_fallback:
            # lost to what is served without a model: serve exactly that (the floor names the champion refused)
            params = dataclasses.replace(params, propensity_source=CATEGORY_AFFINITY)
            versions = CategoryAffinitySource().model_versions()
        elif floor["fallback"] is not None and params.baseline_fallback:  # lost to a baseline: serve its feed
            params = dataclasses.replace(params, fallback=floor["fallback"])
    generation = feed_store(stack).begin_generation(
        model_versions=versions,
        config=params.feed_config(),
        extra={
            "as_of": params.as_of.isoformat(),
            "shards": params.shards,
            "propensity_source": params.propensity_source,
            "chunk_users": params.chunk_users,
            "n_items": n_items,
            "n_users_expected": n_users,
            "origin": origin,
            "baseline_floor": floor,
        },
        variants=params.variants,
    )
    return {
        "generation": generation,
        "params": params.to_dict(),
        "model_versions": versions,
        "shards": list(range(params.shards)),
        "n_users": n_users,
    }


def generate_shard(
    settings: Settings,
    plan: Plan,
    shard: int,
    *,
    source: PropensitySource | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Rank and write the feeds of one shard's users; marks the shard done in the generation."""
    started = time.perf_counter()
    params = GenerationParams.from_dict(plan["params"])
    cfg = params.feed_config()
    stack = up(settings)
    source = source or propensity_source(stack, plan)
    inputs = WarehouseInputs(stack.warehouse_dsn, params.as_of, max_recent_views=cfg.diversity.max_recent_views)
    with inputs as wh, single_threaded_math():  # one core per shard worker: see single_threaded_math
        catalogue = source.catalogue(wh.catalogue_frame(co_bought="co_bought" in cfg.candidates.sources))
        users = wh.shard_user_ids(shard, params.shards)
        chunks = wh.user_chunks(users, params.chunk_users)
        feeds = generate_feeds(catalogue, chunks, cfg, source, on_chunk, params.variants)
        written = feed_store(stack).write_shard(plan["generation"], shard, feeds)
    seconds = time.perf_counter() - started
    return {
        "generation": plan["generation"],
        "shard": shard,
        "users": written,
        "seconds": round(seconds, 3),
        "users_per_s": round(written / seconds, 1) if seconds > 0 else None,
    }


def write_classic(settings: Settings, plan: Plan) -> dict[str, Any]:
    """The generation's classic (control arm) feed: the same scorer with the classic configuration."""
    params = GenerationParams.from_dict(plan["params"])
    stack = up(settings)
    with WarehouseInputs(stack.warehouse_dsn, params.as_of) as warehouse:
        catalogue = Catalogue.from_frame(warehouse.catalogue_frame(co_bought=False))  # popular only
    feed = generation_classic_feed(catalogue, params.feed_config())
    feed_store(stack).write_classic(plan["generation"], feed)
    return {"generation": plan["generation"], "classic": feed.item_ids}


def commit_generation(settings: Settings, plan: Plan) -> dict[str, Any]:
    """Serve the generation (atomic pointer swap), refused unless every shard and the classic feed are written."""
    params = GenerationParams.from_dict(plan["params"])
    meta = feed_store(up(settings)).commit_generation(plan["generation"], params.shards)
    return {
        "generation": meta.generation,
        "status": meta.status,
        "n_users": meta.n_users,
        "committed_at": meta.committed_at,
        "as_of": params.as_of.isoformat(),
    }


def discard_if_uncommitted(settings: Settings, plan: Plan) -> dict[str, Any]:
    """Clean up after a failed run: delete the generation's keys if it is still open (never committed)."""
    store = feed_store(up(settings))
    meta = store.generation_meta(plan["generation"])
    if meta is None or meta.status != OPEN:
        return {"generation": plan["generation"], "discarded": 0, "status": None if meta is None else meta.status}
    return {"generation": plan["generation"], "discarded": store.discard_generation(plan["generation"]), "status": OPEN}


def fail_after_discard(settings: Settings, plan: Plan | None) -> None:
    """The DAG's failure path: clean up the uncommitted generation, then fail with a message saying so."""
    if plan is None:
        raise UserError("no generation was begun (an earlier task failed, see its log); the served one stays")
    result = discard_if_uncommitted(settings, plan)
    raise UserError(
        f"generation {plan['generation']} was not committed (a shard, the classic feed or the commit failed); "
        f"{result['discarded']} of its keys were deleted and the previously served generation stays in place"
    )


def run_generation(settings: Settings, params: GenerationParams, *, progress: bool = True) -> dict[str, Any]:
    """All of it in this process (the CLI): begin, every shard in turn, classic, commit. The model is loaded
    once; on any failure the open generation is discarded and the served one stays."""
    from tqdm import tqdm

    plan = begin_generation(settings, params, origin="cli")
    try:
        source = propensity_source(up(settings), plan)
        shards = []
        with tqdm(total=plan["n_users"], unit="user", desc="feeds", disable=not progress) as bar:
            for shard in plan["shards"]:
                shards.append(generate_shard(settings, plan, shard, source=source, on_chunk=bar.update))
        write_classic(settings, plan)
        committed = commit_generation(settings, plan)
    except BaseException:
        discard_if_uncommitted(settings, plan)
        raise
    return {**committed, "model_versions": plan["model_versions"], "shards": shards}

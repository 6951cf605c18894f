"""The feed API (FastAPI): personal feeds from the served generation in Redis, the classic feed for users
without one, a degraded-but-valid answer from memory when Redis fails, health/readiness probes and Prometheus
metrics. Build it with :func:`create_app`, or with :func:`create_app_for_stack` to get the request-time freshness
filter (:mod:`ltvfeed.serving.freshness`) set up from the stack; ``ltvfeed serve`` runs that under uvicorn.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import FastAPI, Path, Query
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline

from ltvfeed.errors import UserError
from ltvfeed.experiments.assignment import Holdout
from ltvfeed.experiments.registry import RUNNING_KEY
from ltvfeed.serving.api_models import ErrorResponse, FeedResponse, HealthResponse, ReadinessResponse
from ltvfeed.serving.config import MAX_FEED_LENGTH
from ltvfeed.serving.experiment_router import ExperimentRouter
from ltvfeed.serving.feed_archive import feed_archive_dir, republish_if_lost
from ltvfeed.serving.feed_service import (
    FeedService,
    FeedUnavailable,
    async_client_for,
    classic_copy_path,
    open_serving_store,
    writer_store_for,
)
from ltvfeed.serving.feed_store import FeedStore
from ltvfeed.serving.freshness import FreshnessFilter, open_freshness
from ltvfeed.serving.metrics import ApiMetrics, MetricsMiddleware
from ltvfeed.settings import Settings

if TYPE_CHECKING:
    from ltvfeed.experiments.exposures import ExposureLog
    from ltvfeed.infra.stack import Stack

log = logging.getLogger(__name__)

DEFAULT_N = 10
FEED_ROUTE = "/v1/users/{user_id}/feed"


@dataclass(frozen=True)
class ApiOptions:
    """Operational knobs. The timeout bounds what one Redis call can cost a request (Redis answers in well under
    a millisecond on a healthy network); the cooldown is how long requests skip Redis after it failed."""

    redis_timeout_s: float = 0.075
    redis_cooldown_s: float = 0.5
    freshness_timeout_s: float = 0.05
    retry_after_s: int = 1
    self_heal: bool = True  # republish a generation Redis lost from its archive (see feed_archive)
    heal_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.redis_timeout_s <= 5:
            raise UserError(f"redis_timeout_s must be in (0, 5] seconds, got {self.redis_timeout_s!r}")
        if not 0 <= self.redis_cooldown_s <= 60:
            raise UserError(f"redis_cooldown_s must be in [0, 60] seconds, got {self.redis_cooldown_s!r}")
        if not 0 < self.freshness_timeout_s <= 5:
            raise UserError(f"freshness_timeout_s must be in (0, 5] seconds, got {self.freshness_timeout_s!r}")


def _redis_url(settings: Settings) -> str:
    """The configured Redis, else the stack's (starting the embedded servers if needed)."""
    if settings.redis_url:
        return settings.redis_url
    from ltvfeed.infra.stack import up

    return up(settings).redis_url


def create_app(
    settings: Settings,
    store: FeedStore | None = None,
    *,
    freshness: FreshnessFilter | None = None,
    options: ApiOptions | None = None,
    exposures: ExposureLog | None = None,
) -> FastAPI:
    """The feed API over ``store``, or over a fail-fast store on the settings' Redis and ``redis_prefix``.

    A store passed in is used as is (and not closed): build it with
    :func:`~ltvfeed.serving.feed_service.open_serving_store` to get the short timeouts. Per-request reads go
    through an asyncio client with the store's connection settings and key layout. ``freshness`` is applied
    to each feed before it is truncated to ``n`` (see :mod:`ltvfeed.serving.freshness`). Running experiments
    (and the ``holdout_share``) decide who gets the classic feed; ``exposures`` logs what was served under them.
    """
    options = options or ApiOptions()
    owns_store = store is None
    if store is None:
        store = open_serving_store(_redis_url(settings), settings.redis_prefix, timeout_s=options.redis_timeout_s)
    metrics = ApiMetrics()
    heal, writer = None, writer_store_for(store) if options.self_heal else None
    if writer is not None:
        archive = feed_archive_dir(settings.state_dir, settings.redis_prefix)

        def heal(generation: str | None) -> str | None:
            return republish_if_lost(writer, archive, generation)

    service = FeedService(
        store,
        metrics,
        freshness=freshness,
        freshness_timeout_s=options.freshness_timeout_s,
        cooldown_s=options.redis_cooldown_s,
        classic_copy=classic_copy_path(settings.state_dir, settings.redis_prefix),
        heal=heal,
        heal_interval_s=options.heal_interval_s,
    )
    unavailable_headers = {"Retry-After": str(options.retry_after_s)}
    experiments_client = async_client_for(store)
    router = ExperimentRouter(
        experiments_client,
        f"{settings.redis_prefix}{RUNNING_KEY}",
        Holdout(share=settings.holdout_share),
        exposures,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.warm()  # the classic feed in memory before the first request; Redis down is not fatal
        await router.refresh()
        yield
        await router.aclose()
        await experiments_client.aclose()
        await service.aclose()
        if writer is not None:
            writer.client.close()
        if owns_store:
            store.client.close()

    # FastAPIOffline: FastAPI with /docs (Swagger UI) and /redoc served from the package's own assets; FastAPI's
    # default pages load them from a CDN, so they are blank without internet.
    app = FastAPIOffline(
        title="ltvfeed feed API",
        version="1",
        summary="Personalised product feeds ranked for long-term revenue.",
        description=(
            "Feeds are precomputed per *generation* and served from Redis. Users without a personal feed get the "
            'classic feed (`fallback: "classic"`); when Redis is unavailable, or has lost the served generation, '
            "the last known classic feed is served from memory (`degraded: true`) while the generation is "
            "republished from its archive. Every item carries its score components."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.feed_service = service
    app.state.metrics = metrics

    @app.get(
        FEED_ROUTE,
        response_model=FeedResponse,
        tags=["feed"],
        summary="A user's ranked feed",
        responses={
            503: {
                "model": ErrorResponse,
                "description": "No feed can be served: no committed generation yet, or Redis unavailable before "
                "any classic feed was cached. Retry after the Retry-After header.",
            }
        },
    )
    async def get_feed(
        user_id: Annotated[str, Path(min_length=1, max_length=128, description="The user's id.", examples=["u123"])],
        n: Annotated[
            int,
            Query(
                ge=1,
                le=MAX_FEED_LENGTH,
                description=f"Number of items, 1..{MAX_FEED_LENGTH}. A generation stores a fixed number per feed "
                "(10 by default): the answer's `n_available` says how many there are.",
            ),
        ] = DEFAULT_N,
    ) -> Response:
        """The user's feed from the served generation, best first, at most `n` items, each with its score and
        score components. Falls back to the classic feed (flagged) for unknown users and when Redis is down."""
        try:
            # Built (and so validated) as the response model, serialised by pydantic-core; returning the bytes
            # skips FastAPI's second validation + serialisation pass of the same model (~0.15 ms a request).
            route = router.route(user_id)
            served = await service.feed(user_id, n, classic_only=route.classic_only, variant=route.variant)
            feed_id = router.log_exposure(route, served)
            body = FeedResponse.of(served, route.experiment, route.arm, feed_id).model_dump_json()
            return Response(body, media_type="application/json")
        except FeedUnavailable as exc:
            metrics.unavailable.inc()
            return JSONResponse({"detail": exc.reason}, status_code=503, headers=unavailable_headers)

    @app.get("/healthz", response_model=HealthResponse, tags=["probes"], summary="Liveness: the process is up")
    async def healthz() -> HealthResponse:
        return HealthResponse()

    @app.get(
        "/readyz",
        response_model=ReadinessResponse,
        tags=["probes"],
        summary="Readiness: Redis reachable and a committed generation served",
        responses={503: {"model": ReadinessResponse, "description": "Not ready; `reason` says why."}},
    )
    async def readyz() -> ReadinessResponse | JSONResponse:
        state = await service.readiness()
        if state.ready:
            return ReadinessResponse(status="ready", generation=state.generation)
        body = ReadinessResponse(status="not_ready", generation=state.generation, reason=state.reason)
        return JSONResponse(body.model_dump(), status_code=503)

    @app.get(
        "/metrics",
        tags=["probes"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format."}},
    )
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return app


def create_app_for_stack(stack: Stack, options: ApiOptions | None = None) -> FastAPI:
    """The feed API on a running stack, with the freshness filter unless the ``api_freshness`` setting turns it
    off or the feature store cannot provide it (then feeds are served unfiltered, flagged ``"freshness": "off"``).
    ``app.state.freshness_note`` says which, and why."""
    freshness, note = open_freshness(stack, enabled=stack.settings.api_freshness)
    log.info("%s", note)
    settings = stack.settings.model_copy(update={"redis_url": stack.redis_url})
    app = create_app(settings, freshness=freshness, options=options, exposures=open_exposure_log(stack))
    app.state.freshness_note = note
    return app


def open_exposure_log(stack: Stack) -> ExposureLog | None:
    """The exposure log on the stack's warehouse (table created if missing), or None when the warehouse cannot
    be reached now: feeds are still served, exposures not logged (the API logs why)."""
    from ltvfeed.experiments.exposures import ExposureLog
    from ltvfeed.experiments.registry import ensure_schema

    try:
        ensure_schema(stack.warehouse_dsn)
    except Exception as exc:
        log.warning("experiments: no exposure log (%s); feeds are served, exposures not recorded", exc)
        return None
    return ExposureLog(stack.warehouse_dsn).start()


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` worker processes: settings from LTVFEED_* variables (``ltvfeed serve``
    sets them to the stack's servers before starting workers)."""
    from ltvfeed.infra.stack import up

    return create_app_for_stack(up(Settings()))

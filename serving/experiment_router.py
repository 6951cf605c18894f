"""Which feed the API serves each user under the running experiments, and the exposure it logs.

The running experiments are read from Redis (``ltvfeed experiments start|ramp|stop`` publishes them) at most
every :data:`REFRESH_S` seconds, in the background: a request never waits for that read and never reads the
database. Assignment itself is a few sha256 per request (:func:`ltvfeed.experiments.assignment.serving_arm`).
Users in the long-term holdout always get the classic feed. An arm serving ``variant:NAME`` gets that variant's
feed of the served generation, read with the personalised one in the same round trip (the fallback when the
generation lacks the variant). Each answer served under an experiment gets a
``feed_id`` that apps send back with clicks and orders, and is logged to ``raw.exposures`` without blocking.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ltvfeed.experiments.assignment import Holdout, serving_arm
from ltvfeed.serving.config import CLASSIC_FEED, PERSONALISED_FEED, variant_of

if TYPE_CHECKING:
    import redis.asyncio as aredis

    from ltvfeed.experiments.exposures import ExposureLog
    from ltvfeed.experiments.registry import Experiment
    from ltvfeed.serving.feed_service import ServedFeed

log = logging.getLogger(__name__)

REFRESH_S = 5.0


@dataclass(frozen=True)
class Route:
    """How one request is served: the experiment and arm (None outside experiments) and which feed."""

    experiment: str | None
    arm: str | None
    feed: str  # classic | personalised | variant:NAME
    holdout: bool = False

    @property
    def classic_only(self) -> bool:
        return self.feed == CLASSIC_FEED

    @property
    def variant(self) -> str | None:
        return variant_of(self.feed)


PERSONALISED = Route(None, None, PERSONALISED_FEED)
HELD_OUT = Route(None, None, CLASSIC_FEED, holdout=True)


class ExperimentRouter:
    def __init__(
        self,
        client: aredis.Redis,
        running_key: str,
        holdout: Holdout | None = None,
        exposures: ExposureLog | None = None,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self._client, self._key = client, running_key
        self._holdout, self.exposures = holdout, exposures
        self._refresh_s = refresh_s
        self._experiments: list[Experiment] = []
        self._feeds: dict[tuple[str, str], str] = {}
        self._loaded_at = float("-inf")
        self._task: asyncio.Task | None = None

    async def refresh(self) -> None:
        """Read the running experiments now (a failed read keeps the last known set)."""
        from ltvfeed.experiments.registry import Experiment

        try:
            raw = await self._client.get(self._key)
            experiments = [Experiment.model_validate(e) for e in json.loads(raw)] if raw else []
        except Exception as exc:  # Redis down or a bad payload: keep serving with what we know
            log.warning("experiments: could not read the running set (%s); keeping the last one", exc)
            self._loaded_at = time.monotonic()
            return
        self._experiments = experiments
        self._feeds = {(e.name, a.name): a.feed for e in experiments for a in e.arms}
        self._loaded_at = time.monotonic()

    def route(self, user_id: str) -> Route:
        if time.monotonic() - self._loaded_at > self._refresh_s and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self.refresh())
        if self._holdout is not None and self._holdout.contains(user_id):
            return HELD_OUT
        hit = serving_arm(self._experiments, user_id)
        if hit is None:
            return PERSONALISED
        experiment, arm = hit
        return Route(experiment, arm, self._feeds.get((experiment, arm), CLASSIC_FEED))

    def log_exposure(self, route: Route, served: ServedFeed) -> str | None:
        """The feed id of this answer (logged when an exposure log is attached); None outside experiments."""
        if route.experiment is None or route.arm is None:
            return None
        feed_id = uuid.uuid4().hex
        if self.exposures is not None:
            self.exposures.log(
                feed_id,
                route.experiment,
                route.arm,
                served.user_id,
                [item.item_id for item in served.items],
                generation=served.generation,
                feed=served.feed,
            )
        return feed_id

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.exposures is not None:
            await asyncio.to_thread(self.exposures.close)

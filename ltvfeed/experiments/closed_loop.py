"""The closed-loop simulated experiment (``ltvfeed experiments simulate``): simulated users are served their
arm's feed by the real feed API and respond to it, and the experiment is judged by the real metrics and stats.

1. A simulated shop ends the day the experiment starts (``days`` before today, so every simulated event lies in
   the past, as the collector requires); it is loaded through the ingest, its marts built by dbt and one
   generation committed (classic + personalised feeds; :mod:`.closed_loop_shop`).
2. The experiment (control = classic feed, treatment = personalised, or the given arms) is created and started
   in the registry and published to Redis: assignment is the real one, in the feed API.
3. Each simulated day, the users who visit (their hidden visit rate, while signed up and not churned) GET their
   feed from the feed API app (in-process ASGI), which logs the exposure through the exposure log with the
   simulated time; the response model (:mod:`ltvfeed.simulator.response`) draws clicks, add-to-carts and orders
   from their hidden traits, and these go, signed, through the collector app into raw.events / raw.orders.
   Every ``regenerate_every`` days the marts are rebuilt with what the collector stored and a new generation is
   committed, so the personalised arm learns from the loop's own data (0: the first generation throughout).
4. The experiment is stopped, ``marts.experiment_user_metrics`` built by dbt (as the ``experiment_report`` DAG
   does) and the report written by the read-out (HTML under the state dir, MLflow run).

Time is compressed: a simulated day takes seconds. Counts of what was served, logged, emitted and stored come
back with the read-out, so a caller can check that nothing was lost or duplicated on the way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from ltvfeed.errors import UserError
from ltvfeed.experiments.closed_loop_events import ClockedExposureLog, SimClock, Visit, collector_events
from ltvfeed.experiments.closed_loop_shop import (
    Shoppers,
    build_generation_marts,
    generate_feeds,
    item_rows,
    shoppers,
    simulate_and_load,
)
from ltvfeed.experiments.readout import Readout
from ltvfeed.experiments.registry import Experiment, FeedArm
from ltvfeed.infra.stack import Stack
from ltvfeed.serving.config import WEIGHT_PRESETS, ScoringWeights, variant_of
from ltvfeed.simulator import SimulationConfig
from ltvfeed.simulator.response import ResponseParams, respond, visitors
from ltvfeed.warehouse.experiment_reads import exposures_logged

PARTNER = "closed-loop-shop"  # the collector partner the simulated shop's site sends as
DEFAULT_ARMS = (
    FeedArm(name="control", feed="classic", weight=1),
    FeedArm(name="treatment", feed="personalised", weight=1),
)
METRICS_PRIMARY = "conversion_rate"
METRICS_SECONDARY = ("ctr", "average_order_value", "orders_per_user", "long_window_revenue")
METRICS_GUARDRAIL = ("revenue_per_user",)
DAY_MARGIN_S = 600  # visits end this long before midnight, so a visit's events stay on its day


def arm_variants(arms: Sequence[FeedArm]) -> dict[str, ScoringWeights]:
    """The variant feeds the arms serve (``variant:NAME``), generated in every generation of the loop: NAME is a
    weight preset (the loop has no other way to know a variant's weights)."""
    out = {}
    for arm in arms:
        name = variant_of(arm.feed)
        if name is None:
            continue
        if name not in WEIGHT_PRESETS:
            raise UserError(
                f"arm {arm.name!r} serves variant:{name}, but the closed loop generates only variants named "
                f"after a weight preset ({', '.join(WEIGHT_PRESETS)})"
            )
        out[name] = ScoringWeights.preset(name)
    return out


@dataclass(frozen=True)
class ClosedLoopConfig:
    users: int = 5000
    items: int = 300
    history_days: int = 180  # the shop's past before the experiment (what the first feeds are built from)
    days: int = 90  # simulated experiment days
    seed: int = 7
    regenerate_every: int = 30  # days between feed generations during the run; 0 = never
    feed_length: int = 10
    name: str | None = None
    arms: tuple[FeedArm, ...] = DEFAULT_ARMS
    response: ResponseParams = field(default_factory=ResponseParams)

    def __post_init__(self) -> None:
        if self.users < 20:
            raise UserError(f"--users must be at least 20 (two arms need users), got {self.users}")
        if self.items < 16:
            raise UserError(f"--items must be at least 16 (one per category), got {self.items}")
        if self.history_days < 7:
            raise UserError(f"--history-days must be at least 7, got {self.history_days}")
        if not 1 <= self.days <= 365:
            raise UserError(f"--days must be between 1 and 365, got {self.days}")
        if self.seed < 0:
            raise UserError(f"--seed must be zero or positive, got {self.seed}")
        if self.regenerate_every < 0:
            raise UserError(f"--regenerate-every must be 0 (never) or a number of days, got {self.regenerate_every}")
        if not 1 <= self.feed_length <= 100:
            raise UserError(f"feed length must be between 1 and 100, got {self.feed_length}")
        arm_variants(self.arms)  # an arm's variant the loop cannot generate is refused before any work

    @property
    def variants(self) -> dict[str, ScoringWeights]:
        return arm_variants(self.arms)

    @property
    def experiment_name(self) -> str:
        return self.name or f"closed-loop-seed{self.seed}"

    def start(self, today: date) -> date:
        """First simulated day: the experiment ends yesterday."""
        return today - timedelta(days=self.days)


@dataclass
class LoopCounts:
    """What crossed each boundary; equal pairs mean nothing was lost or duplicated."""

    visits: int = 0
    feeds_served: int = 0  # 200 answers of the feed API
    feed_ids: int = 0  # answers served under the experiment (each must be one exposure)
    exposures_logged: int = 0  # rows in raw.exposures for the experiment
    exposures_dropped: int = 0
    events_emitted: int = 0  # by the response model, as collector events
    events_stored: int = 0  # the collector's answers
    events_duplicate: int = 0
    events_rejected: int = 0
    generations: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClosedLoopResult:
    experiment: Experiment
    counts: LoopCounts
    readout: Readout
    start: date
    days: int
    seconds: float

    @property
    def end(self) -> date:
        """Last simulated day."""
        return self.start + timedelta(days=self.days - 1)


def _experiment(config: ClosedLoopConfig) -> Experiment:
    return Experiment(
        name=config.experiment_name,
        salt=f"{config.experiment_name}-salt",
        arms=list(config.arms),
        traffic_share=1.0,
        primary_metric=METRICS_PRIMARY,
        secondary_metrics=list(METRICS_SECONDARY),
        guardrail_metrics=list(METRICS_GUARDRAIL),
        ltv_window_days=max(config.days, 7),
    )


def _start_experiment(stack: Stack, experiment: Experiment) -> None:
    import redis

    from ltvfeed.experiments import registry

    registry.create(stack.warehouse_dsn, experiment)
    registry.start(stack.warehouse_dsn, experiment.name)
    client = redis.Redis.from_url(stack.redis_url)
    try:
        registry.publish_running(stack.warehouse_dsn, client, stack.settings.redis_prefix)
    finally:
        client.close()


def _stop_experiment(stack: Stack, name: str) -> None:
    import redis

    from ltvfeed.experiments import registry

    registry.stop(stack.warehouse_dsn, name)
    client = redis.Redis.from_url(stack.redis_url)
    try:
        registry.publish_running(stack.warehouse_dsn, client, stack.settings.redis_prefix)
    finally:
        client.close()


class _Loop:
    """One run's servers (feed API and collector apps, in-process) and state, day by day."""

    def __init__(self, stack: Stack, config: ClosedLoopConfig, shop: Shoppers, start: date) -> None:
        from fastapi.testclient import TestClient

        from ltvfeed.collector.client import EventClient
        from ltvfeed.collector.partners import add_partner, ensure_collector_schema, fernet
        from ltvfeed.collector.service import create_app_for_stack as collector_app
        from ltvfeed.serving.api import create_app

        self.stack, self.config, self.shop = stack, config, shop
        self.rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC105ED]))
        self.first_day = datetime(start.year, start.month, start.day, tzinfo=UTC)
        self.clock = SimClock(self.first_day)
        self.counts = LoopCounts()
        self.exposures = ClockedExposureLog(stack.warehouse_dsn, self.clock).start()
        settings = stack.settings.model_copy(update={"redis_url": stack.redis_url, "pg_dsn": stack.pg_dsn})
        self.api = TestClient(create_app(settings, exposures=self.exposures))
        ensure_collector_schema(stack.warehouse_dsn)
        partner = f"{PARTNER}-{config.experiment_name}"[:64]
        secret = add_partner(stack.warehouse_dsn, fernet(stack.settings), partner)
        self.collector = TestClient(collector_app(stack, realtime=False))
        self.sender = EventClient(str(self.collector.base_url), partner, secret, http=self.collector)

    def __enter__(self) -> _Loop:
        self.api.__enter__()
        self.collector.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sender.close()
        self.collector.__exit__(*exc)
        self.api.__exit__(*exc)  # closes the exposure log: everything queued is written

    def day(self, d: int) -> None:
        """Serve, respond and send the events of simulated day ``d`` (0 = the experiment's first day)."""
        midnight = self.first_day + timedelta(days=d)
        rows = visitors(self.shop.traits, self.shop.sim_day(midnight), self.rng, self.config.response)
        self.rng.shuffle(rows)
        offsets = np.sort(self.rng.integers(0, 86_400 - DAY_MARGIN_S, size=len(rows)))
        visits, served_rows, feeds = [], [], []
        for row, offset in zip(rows, offsets, strict=True):
            self.clock.now = midnight + timedelta(seconds=int(offset))
            user = str(self.shop.traits.user_ids[row])
            self.counts.visits += 1
            answer = self.api.get(f"/v1/users/{user}/feed", params={"n": self.config.feed_length})
            if answer.status_code != 200:
                continue
            body = answer.json()
            self.counts.feeds_served += 1
            self.counts.feed_ids += body.get("feed_id") is not None
            visits.append(Visit(user, self.clock.now, body.get("feed_id")))
            served_rows.append(row)
            feeds.append([i["item_id"] for i in body["items"]])
        if not visits:
            return
        users = np.asarray(served_rows)
        served = item_rows(self.shop, feeds, self.config.feed_length)
        responses = respond(
            self.shop.traits,
            self.shop.items,
            self.shop.memory,
            users,
            served,
            self.shop.sim_day(midnight),
            self.rng,
            self.config.response,
        )
        self.shop.memory.record(served, users, responses, self.shop.sim_day(midnight))
        events = collector_events(visits, responses, self.shop.items, f"{self.config.experiment_name}-d{d}")
        self.counts.events_emitted += len(events)
        if events:
            totals = self.sender.send(events)
            self.counts.events_stored += totals["stored"]
            self.counts.events_duplicate += totals["duplicate"]
            self.counts.events_rejected += totals["rejected"]


def run_closed_loop(
    stack: Stack,
    config: ClosedLoopConfig,
    work_dir: Path,
    *,
    today: date | None = None,
    echo: Callable[[str], None] = print,
) -> ClosedLoopResult:
    """The whole simulated experiment on ``stack`` (its warehouse should hold no other shop); files under
    ``work_dir`` (the report under the state dir's experiments/)."""
    import time

    from ltvfeed.experiments.readout import report
    from ltvfeed.orchestration.experiment_tasks import build_metrics

    started = time.monotonic()
    start = config.start(today or datetime.now(UTC).date())
    sim = SimulationConfig(
        n_users=config.users,
        n_items=config.items,
        days=config.history_days,
        seed=config.seed,
        end_date=start,
        horizons=(max(config.days, 1),),
    )
    shop_dir, target = work_dir / "shop", work_dir / "dbt_target"
    echo(f"simulating {config.users:,} users x {config.items} items, {config.history_days} days up to {start} ...")
    simulate_and_load(stack, sim, shop_dir)
    build_generation_marts(stack, start, target)
    generations = [generate_feeds(stack, start, config.feed_length, config.variants)]
    echo(f"feeds generated for {start} (generation {generations[0]})")
    experiment = _experiment(config)
    _start_experiment(stack, experiment)
    echo(f"experiment {experiment.name} running: " + ", ".join(f"{a.name}={a.feed}" for a in experiment.arms))

    shop = shoppers(sim, shop_dir)
    with _Loop(stack, config, shop, start) as loop:
        loop.counts.generations = generations
        for d in range(config.days):
            if d and config.regenerate_every and d % config.regenerate_every == 0:
                as_of = start + timedelta(days=d)
                build_generation_marts(stack, as_of, target)
                loop.counts.generations.append(generate_feeds(stack, as_of, config.feed_length, config.variants))
                echo(f"day {d}: feeds regenerated for {as_of} from what the collector stored")
            loop.day(d)
            if (d + 1) % 10 == 0 or d + 1 == config.days:
                c = loop.counts
                echo(f"day {d + 1}/{config.days}: {c.feeds_served:,} feeds served, {c.events_stored:,} events stored")
    counts = loop.counts
    counts.exposures_dropped = loop.exposures.dropped
    counts.exposures_logged = exposures_logged(stack.warehouse_dsn, experiment.name)
    _stop_experiment(stack, experiment.name)
    if counts.visits == 0:
        raise UserError(
            f"no simulated user visited in {config.days} day(s): nothing was served (more --users or --days)"
        )
    if counts.feeds_served == 0:
        raise UserError(f"the feed API served no feed in {counts.visits:,} visits (is a generation committed?)")
    if counts.exposures_logged == 0:
        raise UserError(
            f"no exposure was logged for {counts.feeds_served:,} feeds served: every visitor held out "
            "(LTVFEED_HOLDOUT_SHARE), or the exposure log could not write"
        )
    build_metrics(stack.settings, stack)
    readout = report(stack, experiment.name)
    return ClosedLoopResult(experiment, counts, readout, start, config.days, time.monotonic() - started)

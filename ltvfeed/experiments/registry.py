"""Experiments as configuration in PostgreSQL (``ops.experiments``), with every change recorded
(``ops.experiment_changes``), and the running set published to Redis so that the feed API assigns users
without a database read per request.

Life cycle: ``draft`` → ``running`` → ``stopped``. Raising the traffic share (``ramp``) only adds users: the
traffic hash is fixed by the salt. Arms, salt and namespace range are frozen once an experiment has started,
because changing them would move users between arms mid-experiment. Two running experiments on the same
namespace must not overlap unless created with ``allow_overlap``.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from importlib import resources
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from ltvfeed.db import connect
from ltvfeed.errors import UserError
from ltvfeed.experiments.assignment import Arm, AssignmentConfig, overlapping
from ltvfeed.serving.config import CLASSIC_FEED, PERSONALISED_FEED, variant_of

Status = Literal["draft", "running", "stopped"]
FEEDS = ("classic", "personalised", "variant:NAME")  # what an arm serves (NAME: a variant of the generation)
METRICS = (
    "ctr",
    "conversion_rate",
    "revenue_per_user",
    "average_order_value",
    "orders_per_user",
    "long_window_revenue",
)
RUNNING_KEY = "experiments:running"  # under the Redis prefix: the JSON the feed API reads


class FeedArm(Arm):
    feed: str = Field(default="classic", description="what the arm serves: " + ", ".join(FEEDS))

    @model_validator(mode="after")
    def _known_feed(self) -> FeedArm:
        try:
            variant = variant_of(self.feed)
        except UserError as exc:
            raise ValueError(f"arm {self.name!r}: {exc}") from None
        if variant is None and self.feed not in (CLASSIC_FEED, PERSONALISED_FEED):
            raise ValueError(f"arm {self.name!r}: feed must be one of {', '.join(FEEDS)} (got {self.feed!r})")
        return self


class Experiment(AssignmentConfig):
    """An experiment: assignment (salt, arms, traffic, namespace range) plus what it is judged on."""

    arms: list[FeedArm] = Field(min_length=2)  # type: ignore[assignment]
    primary_metric: str = "conversion_rate"
    secondary_metrics: list[str] = Field(default_factory=lambda: ["ctr", "average_order_value"])
    guardrail_metrics: list[str] = Field(default_factory=lambda: ["revenue_per_user"])
    ltv_window_days: int = Field(default=180, ge=7, le=1095)
    allow_overlap: bool = False

    @model_validator(mode="after")
    def _known_metrics(self) -> Experiment:
        for metric in [self.primary_metric, *self.secondary_metrics, *self.guardrail_metrics]:
            if metric not in METRICS:
                raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        return self


class ExperimentRecord(BaseModel):
    experiment: Experiment
    status: Status
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None


def schema_sql() -> str:
    """The registry's and the exposure log's DDL (ltvfeed/sql/experiments.sql)."""
    return resources.files("ltvfeed").joinpath("sql/experiments.sql").read_text()


def ensure_schema(dsn: str) -> None:
    with connect(dsn) as conn:
        conn.execute(schema_sql())


def new_salt() -> str:
    return secrets.token_hex(8)


def _log(conn, name: str, change: dict) -> None:
    conn.execute("insert into ops.experiment_changes (name, change) values (%s, %s)", (name, json.dumps(change)))


def create(dsn: str, experiment: Experiment) -> None:
    ensure_schema(dsn)
    with connect(dsn) as conn:
        row = conn.execute(
            "insert into ops.experiments (name, config) values (%s, %s) on conflict do nothing returning name",
            (experiment.name, experiment.model_dump_json()),
        ).fetchone()
        if row is None:
            raise UserError(f"experiment {experiment.name!r} already exists (see `ltvfeed experiments list`)")
        _log(conn, experiment.name, {"action": "create", "config": experiment.model_dump(mode="json")})


def get(dsn: str, name: str) -> ExperimentRecord:
    ensure_schema(dsn)
    with connect(dsn) as conn:
        row = conn.execute(
            "select config, status, created_at, started_at, stopped_at from ops.experiments where name = %s", (name,)
        ).fetchone()
    if row is None:
        raise UserError(f"no experiment {name!r} (see `ltvfeed experiments list`)")
    return ExperimentRecord(
        experiment=Experiment.model_validate(row[0]),
        status=row[1],
        created_at=row[2],
        started_at=row[3],
        stopped_at=row[4],
    )


def list_all(dsn: str) -> list[ExperimentRecord]:
    ensure_schema(dsn)
    with connect(dsn) as conn:
        names = [r[0] for r in conn.execute("select name from ops.experiments order by created_at").fetchall()]
    return [get(dsn, n) for n in names]


def running(dsn: str) -> list[Experiment]:
    return [r.experiment for r in list_all(dsn) if r.status == "running"]


def start(dsn: str, name: str) -> ExperimentRecord:
    record = get(dsn, name)
    if record.status != "draft":
        raise UserError(f"experiment {name!r} is {record.status}; only a draft can start")
    clashes = [pair for pair in overlapping([record.experiment, *running(dsn)]) if name in pair]
    if clashes and not record.experiment.allow_overlap:
        other = next(a if a != name else b for a, b in clashes)
        raise UserError(
            f"experiment {name!r} overlaps running experiment {other!r} in namespace "
            f"{record.experiment.namespace!r}: give it a disjoint --namespace-range, or create it with --allow-overlap"
        )
    with connect(dsn) as conn:
        conn.execute("update ops.experiments set status = 'running', started_at = now() where name = %s", (name,))
        _log(conn, name, {"action": "start"})
    return get(dsn, name)


def ramp(dsn: str, name: str, traffic_share: float) -> ExperimentRecord:
    """Change the traffic share. Raising it adds users and reassigns nobody; lowering it drops users (they
    get the control feed again), which biases a running comparison, so it is refused while running."""
    record = get(dsn, name)
    if record.status == "stopped":
        raise UserError(f"experiment {name!r} is stopped")
    current = record.experiment.traffic_share
    if record.status == "running" and traffic_share < current:
        raise UserError(
            f"experiment {name!r} runs at {current:.0%}: lowering traffic would move users out mid-experiment; "
            "stop it instead"
        )
    updated = record.experiment.model_copy(update={"traffic_share": traffic_share})
    Experiment.model_validate(updated.model_dump())
    with connect(dsn) as conn:
        conn.execute("update ops.experiments set config = %s where name = %s", (updated.model_dump_json(), name))
        _log(conn, name, {"action": "ramp", "from": current, "to": traffic_share})
    return get(dsn, name)


def stop(dsn: str, name: str) -> ExperimentRecord:
    record = get(dsn, name)
    if record.status != "running":
        raise UserError(f"experiment {name!r} is {record.status}; only a running experiment can stop")
    with connect(dsn) as conn:
        conn.execute("update ops.experiments set status = 'stopped', stopped_at = now() where name = %s", (name,))
        _log(conn, name, {"action": "stop"})
    return get(dsn, name)


def publish_running(dsn: str, redis_client, prefix: str) -> int:
    """Write the running experiments to Redis for the feed API (one key, replaced atomically)."""
    payload = json.dumps([e.model_dump(mode="json") for e in running(dsn)])
    redis_client.set(f"{prefix}{RUNNING_KEY}", payload)
    return len(json.loads(payload))


def load_running(redis_client, prefix: str) -> list[Experiment]:
    raw = redis_client.get(f"{prefix}{RUNNING_KEY}")
    return [Experiment.model_validate(e) for e in json.loads(raw)] if raw else []

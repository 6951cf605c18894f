"""Deterministic assignment of users to experiment arms: a hash of (salt, user id), no state, no database.

The same user gets the same arm in every process and after every restart, because the arm is a pure
function of the experiment's salt and the user id. Three independent hashes (different prefixes of the
salt) decide three things, so changing one never moves the others:
- traffic: a user is in the experiment when their traffic bucket < traffic share, so raising the share
  only adds users, and nobody already in is reassigned;
- arm: cumulative arm weights over the arm bucket;
- namespace: experiments on the same surface take disjoint ranges of one namespace hash (salted by the
  namespace, not the experiment), so they never share a user unless their ranges overlap.
A long-term holdout (a range of a global hash) is kept out of every experiment and of personalisation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pydantic import BaseModel, Field, field_validator, model_validator

_SCALE = float(2**64)


def bucket(salt: str, user_id: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, user id); sha256, so it is the same on every platform."""
    digest = hashlib.sha256(f"{salt}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


class Arm(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    weight: float = Field(gt=0)


class Holdout(BaseModel):
    """Users kept out of all personalisation for the long run (they always get the classic feed)."""

    salt: str = "ltvfeed-holdout"
    share: float = Field(default=0.0, ge=0, lt=1)

    def contains(self, user_id: str) -> bool:
        return self.share > 0 and bucket(self.salt, user_id) < self.share


class AssignmentConfig(BaseModel):
    """What assignment needs of an experiment (the registry stores more: metrics, dates, windows)."""

    name: str = Field(min_length=1, max_length=100)
    salt: str = Field(min_length=1)
    arms: list[Arm] = Field(min_length=2)
    traffic_share: float = Field(default=1.0, ge=0, le=1)
    namespace: str = "feed"
    namespace_range: tuple[float, float] = (0.0, 1.0)

    @field_validator("arms")
    @classmethod
    def _unique_arms(cls, arms: list[Arm]) -> list[Arm]:
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique: {names}")
        return arms

    @model_validator(mode="after")
    def _range(self) -> AssignmentConfig:
        lo, hi = self.namespace_range
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"namespace_range must satisfy 0 <= start < end <= 1 (got {self.namespace_range})")
        return self

    @property
    def weights(self) -> list[float]:
        total = sum(a.weight for a in self.arms)
        return [a.weight / total for a in self.arms]


def assign(config: AssignmentConfig, user_id: str, holdout: Holdout | None = None) -> str | None:
    """The user's arm, or None when the user is not in this experiment (holdout, other namespace range,
    or beyond the traffic share)."""
    if holdout is not None and holdout.contains(user_id):
        return None
    lo, hi = config.namespace_range
    if not lo <= bucket(f"namespace:{config.namespace}", user_id) < hi:
        return None
    if bucket(f"traffic:{config.salt}", user_id) >= config.traffic_share:
        return None
    point = bucket(f"arm:{config.salt}", user_id)
    cumulative = 0.0
    for arm, weight in zip(config.arms, config.weights, strict=True):
        cumulative += weight
        if point < cumulative:
            return arm.name
    return config.arms[-1].name  # float rounding at the very top of [0, 1)


def overlapping(configs: Sequence[AssignmentConfig]) -> list[tuple[str, str]]:
    """Pairs of experiments in one namespace whose ranges intersect (they could share users)."""
    pairs = []
    for i, a in enumerate(configs):
        for b in configs[i + 1 :]:
            if (
                a.namespace == b.namespace
                and a.namespace_range[0] < b.namespace_range[1]
                and (b.namespace_range[0] < a.namespace_range[1])
            ):
                pairs.append((a.name, b.name))
    return pairs


def serving_arm(
    experiments: Sequence[AssignmentConfig], user_id: str, holdout: Holdout | None = None
) -> tuple[str, str] | None:
    """(experiment name, arm) the user is served under, or None (holdout, or in no running experiment).

    The first experiment that takes the user wins; non-overlapping namespace ranges make that the only one.
    Pure and cheap (a few sha256), so the feed API calls it per request without a database read."""
    if holdout is not None and holdout.contains(user_id):
        return None
    for config in experiments:
        arm = assign(config, user_id)
        if arm is not None:
            return config.name, arm
    return None

"""Assignment: uniform, stable across processes, ramp-up without reassignment, holdout and namespace
exclusion."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats as sps

from ltvfeed.experiments.assignment import Arm, AssignmentConfig, Holdout, assign, bucket, overlapping

USERS = [f"u{i:07d}" for i in range(40000)]


def _config(**kw) -> AssignmentConfig:
    base = {"name": "feed-v1", "salt": "s1", "arms": [Arm(name="control", weight=1), Arm(name="treatment", weight=1)]}
    return AssignmentConfig(**{**base, **kw})


def test_buckets_are_uniform() -> None:
    b = np.array([bucket("salt", u) for u in USERS])
    assert sps.kstest(b, "uniform").pvalue > 0.001
    counts = np.bincount((b * 20).astype(int), minlength=20)
    assert sps.chisquare(counts).pvalue > 0.001


def test_arms_follow_weights() -> None:
    config = _config(arms=[Arm(name="a", weight=1), Arm(name="b", weight=1), Arm(name="c", weight=2)])
    arms = [assign(config, u) for u in USERS]
    observed = [arms.count(a) for a in ("a", "b", "c")]
    assert sps.chisquare(observed, f_exp=np.array([0.25, 0.25, 0.5]) * len(USERS)).pvalue > 0.001


def test_assignment_is_stable_across_processes() -> None:
    config = _config()
    here = {u: assign(config, u) for u in USERS[:500]}
    code = (
        "import json,sys; from ltvfeed.experiments.assignment import AssignmentConfig, assign;"
        "c=AssignmentConfig.model_validate_json(sys.argv[1]);"
        f"print(json.dumps({{u: assign(c, u) for u in {USERS[:500]!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, config.model_dump_json()],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert json.loads(out.stdout) == here


def test_ramp_up_adds_users_without_reassigning_anyone() -> None:
    small, large = _config(traffic_share=0.1), _config(traffic_share=0.5)
    before = {u: assign(small, u) for u in USERS}
    after = {u: assign(large, u) for u in USERS}
    in_before = {u for u, a in before.items() if a is not None}
    assert all(after[u] == before[u] for u in in_before)
    share = sum(a is not None for a in after.values()) / len(USERS)
    assert share == pytest.approx(0.5, abs=0.01)
    assert len(in_before) / len(USERS) == pytest.approx(0.1, abs=0.01)


def test_new_salt_reshuffles_arms() -> None:
    a = [assign(_config(salt="s1"), u) for u in USERS[:5000]]
    b = [assign(_config(salt="s2"), u) for u in USERS[:5000]]
    agreement = np.mean([x == y for x, y in zip(a, b, strict=True)])
    assert agreement == pytest.approx(0.5, abs=0.03)


def test_holdout_users_are_never_assigned() -> None:
    holdout = Holdout(share=0.05)
    held = [u for u in USERS if holdout.contains(u)]
    assert len(held) / len(USERS) == pytest.approx(0.05, abs=0.005)
    for config in (_config(), _config(salt="other")):
        assert all(assign(config, u, holdout) is None for u in held)
    assert all(assign(_config(), u, holdout) is not None for u in USERS[:2000] if u not in set(held))


def test_disjoint_namespace_ranges_never_share_a_user() -> None:
    first = _config(name="first", namespace_range=(0.0, 0.5))
    second = _config(name="second", salt="s2", namespace_range=(0.5, 1.0))
    in_first = {u for u in USERS if assign(first, u) is not None}
    in_second = {u for u in USERS if assign(second, u) is not None}
    assert not in_first & in_second
    assert len(in_first) + len(in_second) == len(USERS)
    assert overlapping([first, second]) == []
    assert overlapping([first, _config(name="third", namespace_range=(0.4, 0.6))]) == [("first", "third")]


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValidationError, match="unique"):
        _config(arms=[Arm(name="a", weight=1), Arm(name="a", weight=1)])
    with pytest.raises(ValidationError, match="namespace_range"):
        _config(namespace_range=(0.6, 0.4))
    with pytest.raises(ValidationError):
        _config(arms=[Arm(name="a", weight=1)])

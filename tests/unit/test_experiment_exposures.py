"""serving_arm: the assignment the feed API uses per request (the user's experiment, the holdout respected). The
exposure log against real PostgreSQL is in tests/integration/test_experiment_exposures.py."""

from __future__ import annotations

from ltvfeed.experiments.assignment import Arm, AssignmentConfig, Holdout, assign, serving_arm


def _config(name: str, lo: float, hi: float, traffic: float = 1.0) -> AssignmentConfig:
    return AssignmentConfig(
        name=name,
        salt=f"salt-{name}",
        arms=[Arm(name="control", weight=1), Arm(name="treatment", weight=1)],
        traffic_share=traffic,
        namespace_range=(lo, hi),
    )


def test_serving_arm_picks_the_users_experiment_and_respects_the_holdout() -> None:
    a, b = _config("a", 0.0, 0.5), _config("b", 0.5, 1.0)
    holdout = Holdout(share=0.1)
    seen = {"a": 0, "b": 0, None: 0}
    for i in range(4000):
        user = f"u{i}"
        served = serving_arm([a, b], user, holdout)
        if holdout.contains(user):
            assert served is None
        elif served is not None:
            name, arm = served
            config = a if name == "a" else b
            assert assign(config, user) == arm
            other = b if name == "a" else a
            assert assign(other, user) is None  # disjoint ranges: never in both
        seen[served[0] if served else None] += 1
    assert seen["a"] > 1500 and seen["b"] > 1500 and 300 < seen[None] < 500  # ~10 % holdout
    assert serving_arm([], "u1") is None
    assert serving_arm([_config("c", 0.0, 1.0, traffic=0.0)], "u1") is None

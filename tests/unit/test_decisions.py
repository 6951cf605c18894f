"""The decision rules around the models, on full tables of cases: when a challenger `ltv` replaces the champion
(`compare_to_champion`), and when a backfilled cutoff may take `champion` (`_older_data`). The cutoff rule in
the marts is in tests/integration/test_decisions.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ltvfeed.training.registry import DATA_THROUGH_TAG, PromotionConfig, _older_data, compare_to_champion

MARGIN, TOLERANCE = 0.005, 0.01
CHAMPION = {"normalized_gini": 0.60, "spearman": 0.50}

# (Gini change, Spearman change) of the challenger against the champion -> promoted?
# Spearman may fall by at most TOLERANCE; any rise is fine, however large. Gini must rise by at least MARGIN.
PROMOTION_TABLE = [
    (+0.020, +0.000, True),
    (+0.020, +0.005, True),  # Spearman improves within the tolerance
    (+0.020, +0.015, True),  # Spearman improves by more than the tolerance: still fine
    (+0.020, +0.200, True),  # ... by far more
    (+0.020, -0.005, True),  # a small drop is tolerated
    (+0.020, -TOLERANCE, True),  # exactly the tolerance
    (+0.020, -0.015, False),  # drops past the tolerance
    (+0.020, -0.200, False),
    (+MARGIN, +0.015, True),  # Gini gain exactly the margin
    (+0.004, +0.015, False),  # Gini gain below the margin, Spearman up a lot
    (+0.000, +0.200, False),
    (-0.020, +0.200, False),
    (-0.020, -0.200, False),
]


@pytest.mark.parametrize(("d_gini", "d_spearman", "promoted"), PROMOTION_TABLE)
def test_promotion_rule_on_the_full_table(d_gini: float, d_spearman: float, promoted: bool) -> None:
    cfg = PromotionConfig(
        gini_metric="normalized_gini", spearman_metric="spearman", margin_gini=MARGIN, tolerance_spearman=TOLERANCE
    )
    challenger = {
        "normalized_gini": CHAMPION["normalized_gini"] + d_gini,
        "spearman": CHAMPION["spearman"] + d_spearman,
    }
    decision = compare_to_champion(challenger, CHAMPION, cfg)
    assert decision.promoted is promoted, decision.reason
    if not promoted:
        expected = "gain too small" if d_gini < MARGIN else "dropped too much"
        assert expected in decision.reason


def test_promotion_rule_names_both_failures() -> None:
    cfg = PromotionConfig(margin_gini=MARGIN, tolerance_spearman=TOLERANCE)
    decision = compare_to_champion({"normalized_gini": 0.55, "spearman": 0.30}, CHAMPION, cfg)
    assert not decision.promoted
    assert "normalized_gini gain too small" in decision.reason and "spearman dropped too much" in decision.reason


class _Registry:
    """Stands in for MLflow's client: model versions with their tags (only what `_older_data` reads)."""

    def __init__(self, data_through: dict[str, str | None]) -> None:
        self.data_through = data_through

    def get_model_version(self, name: str, version: str) -> SimpleNamespace:
        assert name == "ltv"
        value = self.data_through[version]
        return SimpleNamespace(tags={} if value is None else {DATA_THROUGH_TAG: value})


# (challenger's data_through, champion's data_through) -> may the challenger take champion?
BACKFILL_TABLE = [
    ("2026-03-01", "2026-03-01", True),  # the same cutoff retrained: promoted if it scores better
    ("2026-03-02", "2026-03-01", True),  # newer data
    ("2027-01-01", "2026-12-31", True),
    ("2026-02-28", "2026-03-01", False),  # a backfilled older cutoff never replaces a newer champion
    ("2025-12-31", "2026-01-01", False),
    ("2026-03-01", None, True),  # a champion without the tag (registered by hand): nothing to compare
    (None, "2026-03-01", True),
]


@pytest.mark.parametrize(("ours", "theirs", "allowed"), BACKFILL_TABLE)
def test_backfill_guard_on_the_full_table(ours: str | None, theirs: str | None, allowed: bool) -> None:
    client = _Registry({"2": ours, "1": theirs})
    reason = _older_data(client, "ltv", "2", "1")
    assert (reason is None) is allowed, reason
    if not allowed:
        assert ours in reason and theirs in reason and "v1" in reason


def test_backfill_guard_without_a_champion() -> None:
    assert _older_data(_Registry({"1": "2026-03-01"}), "ltv", "1", None) is None

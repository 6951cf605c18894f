"""The promotion rule without MLflow: a first version without a champion, margins, NaN metrics on either side,
missing metrics named, the registry config and model names, and MLflow's telemetry switched off. Promotion with
registry aliases on MLflow's real PostgreSQL backend is in tests/integration/test_registry.py."""

from __future__ import annotations

import math

import pytest

from ltvfeed.errors import UserError
from ltvfeed.infra.tracking import check_name
from ltvfeed.training.registry import (
    PromotionConfig,
    compare_to_champion,
)

# --- unit: the decision rule ------------------------------------------------------------------------------


def test_first_version_is_promoted_without_champion():
    d = compare_to_champion({"normalized_gini": 0.1, "spearman": 0.2}, None, PromotionConfig())
    assert d.promoted and "no champion" in d.reason


@pytest.mark.parametrize(
    ("gini_gain", "spearman_change", "promoted"),
    [
        (0.005, 0.0, True),  # exactly the margin
        (0.0049, 0.0, False),  # just below the margin
        (0.05, -0.01, True),  # spearman drop exactly the tolerance
        (0.05, -0.0101, False),  # spearman dropped too much
        (-0.01, 0.2, False),  # worse ranking, whatever spearman does
    ],
)
def test_margins(gini_gain, spearman_change, promoted):
    cfg = PromotionConfig(margin_gini=0.005, tolerance_spearman=0.01)
    champion = {"normalized_gini": 0.40, "spearman": 0.50}
    challenger = {"normalized_gini": 0.40 + gini_gain, "spearman": 0.50 + spearman_change}
    d = compare_to_champion(challenger, champion, cfg)
    assert d.promoted is promoted
    assert "normalized_gini" in d.reason and "spearman" in d.reason


@pytest.mark.parametrize("champion", [None, {"normalized_gini": 0.1, "spearman": 0.5}])
def test_nan_challenger_is_refused(champion):
    d = compare_to_champion({"normalized_gini": math.nan, "spearman": 0.5}, champion, PromotionConfig())
    assert not d.promoted and "nan" in d.reason


def test_nan_champion_needs_a_person():
    d = compare_to_champion(
        {"normalized_gini": 0.3, "spearman": 0.5}, {"normalized_gini": math.nan, "spearman": 0.5}, PromotionConfig()
    )
    assert not d.promoted and "promote by hand" in d.reason


def test_missing_metric_names_it():
    with pytest.raises(UserError, match="'spearman'"):
        compare_to_champion({"normalized_gini": 0.3}, None, PromotionConfig())


def test_config_reads_environment(monkeypatch):
    monkeypatch.setenv("LTVFEED_PROMOTION_MARGIN_GINI", "0.02")
    monkeypatch.setenv("LTVFEED_PROMOTION_GINI_METRIC", "auc_gini")
    cfg = PromotionConfig()
    assert cfg.margin_gini == 0.02 and cfg.gini_metric == "auc_gini"
    monkeypatch.setenv("LTVFEED_PROMOTION_MARGIN_GINI", "-1")
    with pytest.raises(ValueError):
        PromotionConfig()


def test_model_names_are_checked():
    assert check_name("model", "purchase_propensity") == "purchase_propensity"
    with pytest.raises(UserError):
        check_name("model", "x' or name='y")


def test_telemetry_is_switched_off_even_after_mlflow_was_imported(tmp_path):
    """MLflow makes a telemetry client at import unless told not to; this machine must not phone home."""
    import os
    import subprocess
    import sys

    code = (
        "import mlflow\n"
        "from mlflow.telemetry import get_telemetry_client\n"
        "before = get_telemetry_client() is not None\n"
        "from ltvfeed.infra.tracking import disable_telemetry\n"
        "disable_telemetry()\n"
        "print(before, get_telemetry_client() is None)\n"
    )
    quiet = {"PYTEST_CURRENT_TEST", "CI", "DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY"}  # each disables it by itself
    env = {k: v for k, v in os.environ.items() if k not in quiet} | {"HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"], out.stderr

"""The dbt project without a warehouse: its vocabularies agree with the Python side, dbt vars are validated and
the project parses. The marts on a real warehouse are in tests/integration/test_dbt.py."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from ltvfeed.dbt_runner import dbt_project_dir, dbt_vars, parse
from ltvfeed.errors import UserError
from ltvfeed.warehouse import EVENT_TYPES, PREFERENCE_KINDS

T1 = date(2024, 3, 1)  # first cutoff


# ---------------------------------------------------------------------------------------------- no database


def _accepted_values(path: Path, column: str) -> list[list[str]]:
    """Every accepted_values list declared for `column` in one YAML file (sources or models)."""
    doc = yaml.safe_load(path.read_text())
    tables = [t for s in doc.get("sources", []) for t in s.get("tables", [])] + doc.get("models", [])
    found = []
    for table in tables:
        for col in table.get("columns", []):
            if col["name"] != column:
                continue
            for test in col.get("data_tests", []):
                if isinstance(test, dict) and "accepted_values" in test:
                    found.append(test["accepted_values"]["arguments"]["values"])
    return found


def test_event_types_match_python() -> None:
    staging = dbt_project_dir() / "models" / "staging"
    declared = _accepted_values(staging / "_raw__sources.yml", "event_type") + _accepted_values(
        staging / "stg_events.yml", "event_type"
    )
    assert len(declared) == 2, "expected accepted_values on raw.events and stg_events"
    for values in declared:
        assert sorted(values) == sorted(EVENT_TYPES)


def test_preference_kinds_match_python() -> None:
    staging = dbt_project_dir() / "models" / "staging"
    declared = _accepted_values(staging / "_raw__sources.yml", "kind") + _accepted_values(
        staging / "stg_preferences.yml", "kind"
    )
    assert len(declared) == 2
    for values in declared:
        assert sorted(values) == sorted(PREFERENCE_KINDS)


def test_dbt_vars_validation() -> None:
    assert dbt_vars(T1, 30) == {"as_of": "2024-03-01", "horizon_days": 30}
    assert dbt_vars() == {}
    for bad in (0, -3, True):
        with pytest.raises(UserError, match="horizon_days"):
            dbt_vars(None, bad)


def test_parse_manifest(tmp_path: Path) -> None:
    """The project parses without a database, models land in the fixed schemas, marts are incremental
    snapshots keyed on as_of, and every model has tests (Cosmos runs each model as its own task)."""
    import json

    manifest = json.loads(parse(target_path=tmp_path).read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    expected_schema = {"stg_": "staging", "int_": "intermediate"}
    for name, node in models.items():
        schema = next((s for p, s in expected_schema.items() if name.startswith(p)), "marts")
        assert node["schema"] == schema, name
    for name in ("user_features", "user_category_propensity", "item_performance", "user_recent_purchases"):
        config = models[name]["config"]
        assert (config["materialized"], config["incremental_strategy"], config["unique_key"]) == (
            "incremental",
            "delete+insert",
            "as_of",
        )
    assert models["int_user_daily_activity"]["config"]["incremental_strategy"] == "merge"
    tested = {
        dep for n in manifest["nodes"].values() if n["resource_type"] == "test" for dep in n["depends_on"]["nodes"]
    }
    untested = [name for name, node in models.items() if node["unique_id"] not in tested]
    assert not untested

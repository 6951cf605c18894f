"""`ltvfeed demo`'s cutoff: the shop ends yesterday (so unpaused DAGs find fresh data), and a re-run on a later
day reuses the recorded cutoff (the same shop, so the demo stays idempotent)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from ltvfeed.settings import Settings


def test_demo_cutoff_is_today_then_reused(tmp_path):
    from ltvfeed.orchestration.demo import demo_end_date

    settings = Settings(state_dir=tmp_path)
    first = demo_end_date(settings)
    assert first == datetime.now(UTC).date()  # data through yesterday
    record = tmp_path / "demo.json"
    record.write_text(json.dumps({"end_date": "2026-11-01"}))  # as if the first demo ran on 2026-11-01
    assert demo_end_date(settings) == date(2026, 11, 1)


def test_help_names_the_four_dags():
    from typer.testing import CliRunner

    from ltvfeed.cli import app

    out = CliRunner().invoke(app, ["demo", "--help"], terminal_width=200).output
    assert "ltv_pipeline, ltv_retrain, propensity_retrain, feed_generation" in " ".join(out.split())


def test_a_state_dir_with_an_older_demo_keeps_its_cutoff(tmp_path):
    from ltvfeed.orchestration.demo import LEGACY_DEMO_END_DATE, demo_end_date

    settings = Settings(state_dir=tmp_path)
    (settings.landing_dir / "users").mkdir(parents=True)
    (settings.landing_dir / "users" / "users-7.parquet").write_bytes(b"x")
    assert demo_end_date(settings) == LEGACY_DEMO_END_DATE

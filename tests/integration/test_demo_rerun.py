"""README: "Re-running `ltvfeed demo` is safe: files already imported are skipped, marts for the same cutoff are
replaced, not duplicated." The demo's data-writing steps, run twice on a tiny shop in the demo's own order:
simulate into the landing folder (same seed), load the ground truth, ingest the landing folder (ltv_pipeline's
ingest task), build the warehouse for the cutoff (ltv_pipeline's dbt step) and generate feeds (feed_generation,
cold-start propensity so that no model needs training). The four DAGs themselves run in test_pipeline_dag and
the module tests; this checks only what a second run must not duplicate."""

from __future__ import annotations

import json
import uuid
from datetime import date

import pytest

from ltvfeed.settings import Settings

END = date(2026, 3, 1)
HORIZON = 30
TABLES = (
    "raw.users",
    "raw.items",
    "raw.orders",
    "raw.order_items",
    "raw.events",
    "raw.preferences",
    "raw.user_versions",
    "raw.item_versions",
    "ops.quarantine",
    "ground_truth.future_spend",
    "ground_truth.user_traits",
    "marts.user_features",
    "marts.item_performance",
    "marts.user_category_propensity",
    "marts.user_recent_purchases",
    "marts.ltv_labels",
)


@pytest.mark.integration
def test_rerunning_the_demo_steps_duplicates_nothing(stack, run_id: str, tmp_path) -> None:
    from ltvfeed.db import drop_database
    from ltvfeed.dbt_runner import run_dbt
    from ltvfeed.features import clear_online
    from ltvfeed.infra.stack import up
    from ltvfeed.orchestration.feed_tasks import feed_store, run_generation
    from ltvfeed.orchestration.tasks import ingest_landing
    from ltvfeed.serving.generation import GenerationParams
    from ltvfeed.serving.propensity_sources import CATEGORY_AFFINITY
    from ltvfeed.simulator import SimulationConfig, simulate_to_directory
    from ltvfeed.simulator.load import load_ground_truth
    from ltvfeed.warehouse.extent import table_counts

    suffix = uuid.uuid4().hex[:6]
    settings = Settings(
        pg_dsn=stack.pg_dsn,
        redis_url=stack.redis_url,
        state_dir=tmp_path / "state",
        warehouse_db=f"ltvfeed_test_{run_id}_demo_{suffix}",
        mlflow_db=f"ltvfeed_test_{run_id}_demoml_{suffix}",
        redis_prefix=f"{stack.settings.redis_prefix}demo_{suffix}:",  # removed with the stack's prefix
    )
    s = up(settings)
    try:
        runs = []
        for _ in range(2):
            config = SimulationConfig(n_users=150, n_items=40, days=90, seed=7, end_date=END)
            simulate_to_directory(config, settings.landing_dir, progress=False)
            load_ground_truth(s.warehouse_dsn, settings.landing_dir)
            imported = ingest_landing(settings)
            dbt_vars = json.dumps({"as_of": END.isoformat(), "horizon_days": HORIZON})
            run_dbt(s.env(), ["build", "--vars", dbt_vars], target_path=tmp_path / "dbt_target")
            params = GenerationParams(as_of=END, shards=2, propensity_source=CATEGORY_AFFINITY)
            generated = run_generation(settings, params, progress=False)
            store = feed_store(s)
            feeds = store.read_feeds([f"u{i:07d}" for i in range(1, 21)])
            runs.append((imported, table_counts(s.warehouse_dsn, TABLES), generated, store.current_generation(), feeds))

        (first, counts1, _, current1, feeds1), (second, counts2, gen2, current2, feeds2) = runs
        assert first["rows_loaded"] > 0 and first["already_imported"] == 0
        assert second["already_imported"] == second["files"] == first["files"]  # every file skipped by content
        assert second["rows_loaded"] == 0
        assert all(counts1[t] for t in TABLES if t != "ops.quarantine"), counts1  # the shop is really there
        assert counts2 == counts1  # marts for the same cutoff replaced, raw rows never inserted twice
        assert current2 != current1 and current2 == gen2["generation"]  # a new generation is served ...
        assert {u: f and [i.item_id for i in f.items] for u, f in feeds2.items()} == {
            u: f and [i.item_id for i in f.items] for u, f in feeds1.items()
        }  # ... holding the same feeds
        assert any(feeds1.values())
    finally:
        try:
            clear_online(s)
        finally:
            drop_database(stack.pg_dsn, settings.warehouse_db)
            drop_database(stack.pg_dsn, settings.mlflow_db)

"""``experiment_report``'s work end to end on real PostgreSQL and MLflow: exposures through the ExposureLog,
orders in raw.orders, dbt builds the mart, the report is written under the state dir and logged to MLflow with
the primary lift the raw data implies (computed here independently)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import psycopg
import pytest

from ltvfeed.errors import UserError
from ltvfeed.experiments import registry
from ltvfeed.experiments.assignment import serving_arm
from ltvfeed.experiments.exposures import ExposureLog

pytestmark = pytest.mark.integration


@pytest.fixture
def exp_stack(stack, run_id: str):
    from ltvfeed.db import drop_database
    from ltvfeed.warehouse import ensure_warehouse

    name = f"ltvfeed_test_{run_id}_xr_{uuid.uuid4().hex[:6]}"
    ensure_warehouse(stack.pg_dsn, name)
    yield dataclasses.replace(stack, settings=stack.settings.model_copy(update={"warehouse_db": name}))
    drop_database(stack.pg_dsn, name)


def test_report_from_the_mart_logged_to_mlflow(exp_stack) -> None:
    from mlflow import MlflowClient

    from ltvfeed.infra.tracking import tracking_uri
    from ltvfeed.orchestration.experiment_tasks import build_metrics, report_experiment, running_experiments

    name = f"feed-{uuid.uuid4().hex[:6]}"
    dsn = exp_stack.warehouse_dsn
    arms = [
        registry.FeedArm(name="control", weight=1),
        registry.FeedArm(name="treatment", feed="personalised", weight=1),
    ]
    # a fixed salt: the arms (and so the counts and the verdict) are the same on every run; the name stays unique
    experiment = registry.Experiment(name=name, salt="5eed0f1a2b3c4d5e", arms=arms)
    registry.create(dsn, experiment)
    registry.start(dsn, name)
    assert running_experiments(exp_stack.settings) == [name]

    rng = np.random.default_rng(3)
    start = datetime.now(UTC) - timedelta(days=5)
    converted: dict[str, list[bool]] = {"control": [], "treatment": []}
    writer = ExposureLog(dsn).start()
    with psycopg.connect(dsn) as conn:
        for i in range(600):
            user = f"u{i}"
            exp_name, arm = serving_arm([experiment], user)
            first = start + timedelta(hours=int(rng.integers(0, 72)))
            for k in range(int(rng.integers(1, 4))):
                writer.log(f"{user}-{k}", exp_name, arm, user, ["i1", "i2"], served_at=first + timedelta(hours=k))
            buys = rng.random() < (0.4 if arm == "treatment" else 0.2)
            converted[arm].append(buys)
            if buys:
                conn.execute(
                    "insert into raw.orders (order_id, user_id, ordered_at, amount) values (%s, %s, %s, %s)",
                    (f"o{i}", user, first + timedelta(hours=1, minutes=30), Decimal("20.00")),
                )
            conn.execute(  # before first exposure: a pre-period order, not an outcome
                "insert into raw.orders (order_id, user_id, ordered_at, amount) values (%s, %s, %s, %s)",
                (f"p{i}", user, first - timedelta(days=2), Decimal(str(rng.integers(1, 50)))),
            )
    writer.close()
    assert writer.stored > 600 and writer.dropped == 0

    build_metrics(exp_stack.settings, exp_stack)
    shown = report_experiment(exp_stack.settings, name, exp_stack)
    try:
        html = (exp_stack.settings.state_dir / "experiments" / f"{name}.html").read_text()
        assert name in html and html.count("data:image/png") == 2
        assert shown["users"] == {arm: len(v) for arm, v in converted.items()}
        assert shown["verdict"].startswith("treatment wins")
        run = MlflowClient(tracking_uri(exp_stack)).get_run(shown["mlflow_run_id"])
        expected_lift = np.mean(converted["treatment"]) / np.mean(converted["control"]) - 1
        assert run.data.metrics["treatment_lift"] == pytest.approx(expected_lift)
        assert run.data.metrics["treatment_lift_low"] < expected_lift < run.data.metrics["treatment_lift_high"]
        assert run.data.metrics["treatment_adjusted_p_value"] < 0.05
        assert run.data.tags["ab_experiment"] == name
        artifacts = [a.path for a in MlflowClient(tracking_uri(exp_stack)).list_artifacts(run.info.run_id)]
        assert artifacts == [f"{name}.html"]
    finally:
        (exp_stack.settings.state_dir / "experiments" / f"{name}.html").unlink(missing_ok=True)

    quiet = f"quiet-{uuid.uuid4().hex[:6]}"
    registry.create(dsn, experiment.model_copy(update={"name": quiet}))
    with pytest.raises(UserError, match="no exposures"):
        report_experiment(exp_stack.settings, quiet, exp_stack)

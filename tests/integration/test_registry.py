"""Promotion with registry aliases on MLflow's real PostgreSQL backend (the rule's cases without MLflow are in
tests/unit/test_registry.py).

A tiny real model (a weighted sum of columns, defined here) is logged, registered and judged on a small holdout
with the same ranking metrics a training run uses, so the tests do not depend on the LTV network.
"""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pandas as pd
import pytest

from ltvfeed.errors import UserError
from ltvfeed.infra.tracking import configure_mlflow, use_experiment
from ltvfeed.training.registry import (
    AGAINST_TAG,
    CHALLENGER,
    CHAMPION,
    DECISION_TAG,
    HISTORY_TAG,
    REASON_TAG,
    PromotionConfig,
    champion_history,
    current_champion,
    decide_promotion,
    list_versions,
    load_champion,
    register_and_promote,
    register_version,
    rollback,
)

MODEL = "ltv_test"
FEATURES = ["x", "z"]
# weights of the weighted-sum model; the target follows x, z is noise, so less weight on z ranks better
WEAK, GOOD, BETTER, INVERTED = {"x": 1.0, "z": 3.0}, {"x": 1.0, "z": 0.6}, {"x": 1.0, "z": 0.05}, {"x": -1.0}


# --- integration: a real registry ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_template(stack):
    """An MLflow database migrated once; each test gets a copy of it, ~10x faster than migrating per test."""
    from mlflow import MlflowClient

    from ltvfeed.db import drop_database, ensure_database, sqlalchemy_url, with_database

    name = f"{stack.settings.mlflow_db}_tmpl"
    ensure_database(stack.pg_dsn, name)
    uri = sqlalchemy_url(with_database(stack.pg_dsn, name))
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()  # runs MLflow's migrations
    yield name
    drop_database(stack.pg_dsn, name)


@pytest.fixture
def mlflow_stack(stack, mlflow_template, tmp_path):
    """The test stack with its own fresh MLflow database and its state (artifacts) under tmp_path."""
    import psycopg
    from psycopg import sql

    from ltvfeed.db import drop_database

    name = f"{stack.settings.mlflow_db}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(stack.pg_dsn, autocommit=True) as conn:
        # a template must have no sessions; MLflow keeps a pool open to it in this process
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
            (mlflow_template,),
        )
        conn.execute(
            sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(mlflow_template))
        )
    settings = stack.settings.model_copy(update={"mlflow_db": name, "state_dir": tmp_path / "state"})
    s = dataclasses.replace(stack, settings=settings)
    use_experiment(s, "registry-test")
    yield s
    drop_database(stack.pg_dsn, name)


@pytest.fixture(scope="module")
def holdout() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    x = rng.lognormal(0.0, 1.0, 300)
    return pd.DataFrame({"x": x, "z": rng.normal(0.0, 1.0, 300), "y": x * rng.lognormal(0.0, 0.3, 300)})


def _gini(y: np.ndarray, score: np.ndarray) -> float:
    cum = np.cumsum(y[np.argsort(-score, kind="stable")]) / y.sum()
    return float(cum.mean() - (len(y) + 1) / (2 * len(y)))


def _evaluator(holdout: pd.DataFrame):
    from scipy.stats import spearmanr

    y = holdout["y"].to_numpy()

    def evaluate(model) -> dict[str, float]:
        score = np.asarray(model.predict(holdout[FEATURES]), dtype=float)
        return {"normalized_gini": _gini(y, score) / _gini(y, y), "spearman": float(spearmanr(y, score).statistic)}

    return evaluate


def _expected(weights: dict[str, float], frame: pd.DataFrame) -> np.ndarray:
    return sum(w * frame[c].to_numpy() for c, w in weights.items())


def _log(weights: dict[str, float]) -> str:
    """Log a weighted-sum pyfunc model in a new run; returns its model URI."""
    import mlflow

    class WeightedSum(mlflow.pyfunc.PythonModel):
        def __init__(self, w: dict[str, float]):
            self.w = w

        def predict(self, context, model_input, params=None):
            return sum(v * model_input[c].to_numpy() for c, v in self.w.items())

    with mlflow.start_run():
        mlflow.log_params(weights)
        info = mlflow.pyfunc.log_model(name="model", python_model=WeightedSum(weights), pip_requirements=["mlflow"])
    return info.model_uri


def _train(mlflow_stack, weights, holdout, holdout_id="h1", data_through=None):
    return register_and_promote(
        mlflow_stack, _log(weights), MODEL, holdout_id, _evaluator(holdout), data_through=data_through
    )


def _version_tags(mlflow_stack, version: str) -> dict[str, str]:
    return configure_mlflow(mlflow_stack).get_model_version(MODEL, version).tags


def _run_tags(mlflow_stack, version: str) -> dict[str, str]:
    client = configure_mlflow(mlflow_stack)
    return client.get_run(client.get_model_version(MODEL, version).run_id).data.tags


@pytest.mark.integration
def test_first_version_becomes_champion(mlflow_stack, holdout):
    assert current_champion(mlflow_stack, MODEL) is None
    with pytest.raises(UserError, match="no champion"):
        load_champion(mlflow_stack, MODEL)
    out = _train(mlflow_stack, GOOD, holdout)
    assert out.decision.promoted and out.champion_metrics is None
    assert current_champion(mlflow_stack, MODEL) == out.version
    [row] = list_versions(mlflow_stack, MODEL)
    assert row.aliases == (CHAMPION,)  # challenger moved on to champion
    assert row.holdout_id == "h1" and row.metrics["normalized_gini"] == pytest.approx(
        out.challenger_metrics["normalized_gini"]
    )
    assert _version_tags(mlflow_stack, out.version)[DECISION_TAG] == "promoted"
    np.testing.assert_allclose(load_champion(mlflow_stack, MODEL).predict(holdout[FEATURES]), _expected(GOOD, holdout))


@pytest.mark.integration
def test_better_challenger_is_promoted(mlflow_stack, holdout):
    first = _train(mlflow_stack, WEAK, holdout)
    second = _train(mlflow_stack, BETTER, holdout)
    cfg = PromotionConfig()
    # the comparison ran on the same holdout: the champion's metrics are the first version's own
    assert second.champion_metrics == pytest.approx(first.challenger_metrics)
    assert second.challenger_metrics["normalized_gini"] >= second.champion_metrics["normalized_gini"] + cfg.margin_gini
    assert second.decision.promoted and second.decision.against_version == first.version
    assert current_champion(mlflow_stack, MODEL) == second.version
    assert champion_history(mlflow_stack, MODEL) == [first.version, second.version]
    tags = _version_tags(mlflow_stack, second.version)
    assert tags[DECISION_TAG] == "promoted" and tags[AGAINST_TAG] == first.version
    np.testing.assert_allclose(
        load_champion(mlflow_stack, MODEL).predict(holdout[FEATURES]), _expected(BETTER, holdout)
    )


@pytest.mark.integration
def test_worse_challenger_is_refused_with_reason(mlflow_stack, holdout):
    first = _train(mlflow_stack, GOOD, holdout)
    worse = _train(mlflow_stack, INVERTED, holdout)
    assert not worse.decision.promoted
    assert "refused" in worse.decision.reason and "normalized_gini" in worse.decision.reason
    assert current_champion(mlflow_stack, MODEL) == first.version
    rows = {r.version: r for r in list_versions(mlflow_stack, MODEL)}
    assert rows[worse.version].aliases == (CHALLENGER,)
    assert _version_tags(mlflow_stack, worse.version)[REASON_TAG] == worse.decision.reason
    run_tags = _run_tags(mlflow_stack, worse.version)
    assert run_tags[f"{MODEL}.{REASON_TAG}"] == worse.decision.reason
    assert run_tags[f"{MODEL}.{DECISION_TAG}"] == "refused"


@pytest.mark.integration
def test_backfilled_older_cutoff_never_displaces_a_newer_champion(mlflow_stack, holdout):
    """A backfill re-trains a past cutoff: even scoring better, it stays challenger; a newer one is promoted."""
    from datetime import date

    first = _train(mlflow_stack, WEAK, holdout, data_through=date(2026, 3, 2))
    old = _train(mlflow_stack, BETTER, holdout, data_through=date(2026, 2, 23))
    assert old.challenger_metrics["normalized_gini"] > old.champion_metrics["normalized_gini"] + 0.05
    assert not old.decision.promoted and current_champion(mlflow_stack, MODEL) == first.version
    assert "data through 2026-02-23" in old.decision.reason and "2026-03-02" in old.decision.reason
    assert _version_tags(mlflow_stack, old.version)[DECISION_TAG] == "refused"
    same_day = _train(mlflow_stack, BETTER, holdout, data_through=date(2026, 3, 2))
    assert same_day.decision.promoted and current_champion(mlflow_stack, MODEL) == same_day.version


@pytest.mark.integration
def test_step_by_step_api_checks_its_inputs(mlflow_stack, holdout):
    """register_version + decide_promotion, as a caller that computes the metrics itself would use them."""
    evaluate = _evaluator(holdout)
    import mlflow

    uri = _log(GOOD)
    metrics = evaluate(mlflow.pyfunc.load_model(uri))
    v1 = register_version(mlflow_stack, uri, MODEL, "h1", metrics)
    assert current_champion(mlflow_stack, MODEL) is None  # registering alone does not promote
    assert decide_promotion(mlflow_stack, MODEL, v1, metrics, None).promoted
    uri2 = _log(WEAK)
    v2 = register_version(mlflow_stack, uri2, MODEL, "h1", evaluate(mlflow.pyfunc.load_model(uri2)))
    with pytest.raises(UserError, match="champion_metrics"):
        decide_promotion(mlflow_stack, MODEL, v2, metrics, None)
    with pytest.raises(UserError, match="no version"):
        decide_promotion(mlflow_stack, MODEL, "99", metrics, metrics)


@pytest.mark.integration
def test_rollback_restores_previous_champion(mlflow_stack, holdout):
    first = _train(mlflow_stack, WEAK, holdout)
    second = _train(mlflow_stack, BETTER, holdout)
    assert second.decision.promoted
    assert rollback(mlflow_stack, MODEL) == first.version
    assert current_champion(mlflow_stack, MODEL) == first.version
    np.testing.assert_allclose(load_champion(mlflow_stack, MODEL).predict(holdout[FEATURES]), _expected(WEAK, holdout))
    assert _version_tags(mlflow_stack, first.version)[DECISION_TAG] == "restored by rollback"
    with pytest.raises(UserError, match="no earlier champion"):
        rollback(mlflow_stack, MODEL)


@pytest.mark.integration
def test_alias_moved_by_hand_is_honoured(mlflow_stack, holdout):
    """What the MLflow UI does when someone moves the alias: a bare set_registered_model_alias."""
    first = _train(mlflow_stack, WEAK, holdout)
    second = _train(mlflow_stack, BETTER, holdout)
    assert current_champion(mlflow_stack, MODEL) == second.version
    configure_mlflow(mlflow_stack).set_registered_model_alias(MODEL, CHAMPION, first.version)
    assert current_champion(mlflow_stack, MODEL) == first.version
    np.testing.assert_allclose(load_champion(mlflow_stack, MODEL).predict(holdout[FEATURES]), _expected(WEAK, holdout))
    # the next challenger is compared with the champion chosen by hand
    third = _train(mlflow_stack, GOOD, holdout)
    assert third.decision.against_version == first.version
    assert third.champion_metrics == pytest.approx(first.challenger_metrics)
    assert third.decision.promoted
    # rollbacks undo the latest changes, whoever made them: first the promotion, then the move by hand
    assert rollback(mlflow_stack, MODEL) == first.version
    assert rollback(mlflow_stack, MODEL) == second.version


@pytest.mark.integration
def test_cli_list_promote_rollback(mlflow_stack, holdout, monkeypatch):
    from typer.testing import CliRunner

    from ltvfeed.cli import app
    from ltvfeed.settings import get_settings

    first = _train(mlflow_stack, BETTER, holdout)
    worse = _train(mlflow_stack, WEAK, holdout)
    assert not worse.decision.promoted
    for key, value in mlflow_stack.env().items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        listed = runner.invoke(app, ["models", "list", MODEL, "--reasons"])
        assert listed.exit_code == 0, listed.output
        lines = listed.output.splitlines()
        assert any(line.startswith(f"v{first.version} ") and CHAMPION in line for line in lines)
        assert any(line.startswith(f"v{worse.version} ") and "refused" in line for line in lines)
        everything = runner.invoke(app, ["models", "list"])
        assert MODEL in everything.output and f"champion=v{first.version}" in everything.output

        forced = runner.invoke(app, ["models", "promote", MODEL, worse.version, "--reason", "A/B test winner"])
        assert forced.exit_code == 0, forced.output
        assert current_champion(mlflow_stack, MODEL) == worse.version
        assert _version_tags(mlflow_stack, worse.version)[REASON_TAG] == "A/B test winner"

        back = runner.invoke(app, ["models", "rollback", MODEL])
        assert back.exit_code == 0, back.output
        assert current_champion(mlflow_stack, MODEL) == first.version
        tags = configure_mlflow(mlflow_stack).get_registered_model(MODEL).tags
        assert tags[HISTORY_TAG] == first.version

        missing = runner.invoke(app, ["models", "promote", MODEL, "42"])
        assert isinstance(missing.exception, UserError)
    finally:
        get_settings.cache_clear()


@pytest.mark.integration
def test_a_change_of_champion_says_what_apps_still_read(mlflow_stack, holdout, monkeypatch):
    """Scores of the old champion in the predictions table (what the online store serves) are detected as stale
    once the alias moves - by promote/rollback, or by hand - and the CLI names the command that re-scores."""
    from datetime import date

    import psycopg
    from typer.testing import CliRunner

    from ltvfeed.cli import app
    from ltvfeed.settings import get_settings
    from ltvfeed.training.ltv_scoring import OUTPUT_COLUMNS, served_scoring, write_predictions
    from ltvfeed.warehouse.predictions import PREDICTIONS_TABLE

    model = f"ltv_served_{uuid.uuid4().hex[:6]}"
    first = register_and_promote(mlflow_stack, _log(BETTER), model, "h1", _evaluator(holdout))
    second = register_and_promote(mlflow_stack, _log(WEAK), model, "h1", _evaluator(holdout))
    assert not second.decision.promoted
    as_of = date(2024, 5, 1)
    scores = pd.DataFrame({c: [1.0, 2.0] for c in OUTPUT_COLUMNS})
    dsn = mlflow_stack.warehouse_dsn
    write_predictions(dsn, as_of, 30, model, first.version, np.array(["a", "b"]), scores)
    try:
        served = served_scoring(mlflow_stack, model)
        assert (served.as_of, served.version, served.champion, served.stale) == (as_of, "1", "1", False)
        configure_mlflow(mlflow_stack).set_registered_model_alias(model, CHAMPION, second.version)  # by hand
        served = served_scoring(mlflow_stack, model)
        assert served.stale and served.command == f"ltvfeed ltv score --as-of {as_of}"

        for key, value in mlflow_stack.env().items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        runner = CliRunner()
        listed = runner.invoke(app, ["models", "list", model])
        assert listed.exit_code == 0 and f"apps read v1's scores of snapshot {as_of}" in listed.output
        back = runner.invoke(app, ["models", "rollback", model])
        assert back.exit_code == 0, back.output
        assert f"apps already read v1's scores of snapshot {as_of}" in back.output
        forced = runner.invoke(app, ["models", "promote", model, second.version, "--reason", "test", "--no-rescore"])
        assert forced.exit_code == 0, forced.output
        assert f"but the champion is v{second.version}; re-score with `ltvfeed ltv score --as-of {as_of}`" in (
            forced.output
        )
    finally:
        get_settings.cache_clear()
        with psycopg.connect(dsn) as conn:
            conn.execute(f"delete from {PREDICTIONS_TABLE} where model_name = %s", (model,))

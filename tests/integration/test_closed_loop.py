"""The closed-loop simulated experiment end to end on the real servers (a tiny shop): every feed the API served
is one exposure, every event the response model emitted is stored once, clicks carry feed ids the exposure log
knows, both arms have users, the feeds were regenerated mid-run, the report has every metric with a finite
interval, and a run that served nothing is an error. The command's argument errors are in
tests/unit/test_closed_loop.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ltvfeed.experiments.registry import METRICS


@contextmanager
def _own_stack(stack, run_id: str, state_dir: Path) -> Iterator:
    """The closed loop's fresh stack on this test's own databases and Redis prefix; all removed afterwards."""
    from ltvfeed.experiments.closed_loop_shop import fresh_stack
    from ltvfeed.infra.stack import discard
    from ltvfeed.settings import Settings

    suffix = uuid.uuid4().hex[:6]
    settings = Settings(
        pg_dsn=stack.pg_dsn,
        redis_url=stack.redis_url,
        state_dir=state_dir,
        warehouse_db=f"ltvfeed_test_{run_id}_cl_{suffix}",
        mlflow_db=f"ltvfeed_test_{run_id}_cl_{suffix}_mlflow",
        redis_prefix=f"{stack.settings.redis_prefix}cl_{suffix}:",
    )
    own = fresh_stack(settings)
    try:
        yield own
    finally:
        discard(own)


@pytest.fixture(scope="module")
def loop(stack, run_id: str, tmp_path_factory: pytest.TempPathFactory):
    from ltvfeed.experiments.closed_loop import ClosedLoopConfig, run_closed_loop
    from ltvfeed.experiments.registry import FeedArm

    arms = (  # classic vs personalised, and a third arm served a variant the loop's generations rank
        FeedArm(name="control", feed="classic", weight=1),
        FeedArm(name="treatment", feed="personalised", weight=1),
        FeedArm(name="concept", feed="variant:concept", weight=1),
    )
    config = ClosedLoopConfig(users=400, items=60, history_days=90, days=10, regenerate_every=5, seed=3, arms=arms)
    lines: list[str] = []
    with _own_stack(stack, run_id, tmp_path_factory.mktemp("closed_loop_state")) as own:
        result = run_closed_loop(own, config, own.settings.state_dir / "closed_loop", echo=lines.append)
        yield own, result, lines


def _one(dsn: str, sql: str, *args) -> int:
    from ltvfeed.db import connect

    with connect(dsn) as conn:
        return conn.execute(sql, args).fetchone()[0]


@pytest.mark.integration
def test_every_served_feed_is_one_exposure(loop) -> None:
    stack, result, _ = loop
    c, name = result.counts, result.experiment.name
    assert c.visits > 100 and c.feeds_served == c.visits and c.feed_ids == c.feeds_served  # traffic 100 %
    logged = _one(stack.warehouse_dsn, "select count(*) from raw.exposures where experiment = %s", name)
    assert logged == c.feeds_served == c.exposures_logged and c.exposures_dropped == 0
    # exposures carry simulated time: inside the experiment's days, not the wall clock
    ((first, last),) = _rows(
        stack.warehouse_dsn,
        "select min(served_at at time zone 'UTC')::date, max(served_at at time zone 'UTC')::date from raw.exposures",
    )
    assert result.start <= first and last <= result.end


@pytest.mark.integration
def test_every_emitted_event_is_stored_once(loop) -> None:
    stack, result, _ = loop
    c, dsn, prefix = result.counts, stack.warehouse_dsn, result.experiment.name
    assert c.events_emitted > 20 and c.events_stored == c.events_emitted
    assert c.events_duplicate == 0 and c.events_rejected == 0
    stored_events = _one(dsn, "select count(*) from raw.events where source = 'collector'")
    stored_orders = _one(dsn, "select count(*) from raw.orders where order_id like %s", f"{prefix}-%")
    assert stored_events + stored_orders == c.events_emitted
    lines = _one(dsn, "select count(*) from raw.order_items where order_id like %s", f"{prefix}-%")
    assert stored_orders > 0 and lines >= stored_orders
    orphans = _one(
        dsn,
        "select count(*) from raw.events e where e.source = 'collector' and not exists "
        "(select 1 from raw.exposures x where x.exposure_id = e.properties ->> 'feed_id')",
    )
    assert orphans == 0  # every click / add-to-cart carries the id of a feed the API served


@pytest.mark.integration
def test_feeds_were_regenerated_from_the_loops_data(loop) -> None:
    stack, result, lines = loop
    assert len(result.counts.generations) == 2
    served = {g for (g,) in _rows(stack.warehouse_dsn, "select distinct generation from raw.exposures")}
    assert served == set(result.counts.generations)
    assert any("regenerated" in line for line in lines)
    # each arm was served its own feed, the third one the variant every generation ranked
    feeds = dict(_rows(stack.warehouse_dsn, "select arm, string_agg(distinct feed, ',') from raw.exposures group by 1"))
    assert feeds == {"control": "classic", "treatment": "personalised", "concept": "variant:concept"}


def _rows(dsn: str, sql: str) -> list[tuple]:
    from ltvfeed.db import connect

    with connect(dsn) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.integration
def test_report_has_every_metric_with_a_finite_interval(loop) -> None:
    from ltvfeed.experiments.lift_table import format_lift_table, lift_rows

    stack, result, _ = loop
    analysis = result.readout.analysis
    arms = {a.name for a in result.experiment.arms}
    assert set(analysis.users) == arms and all(n > 10 for n in analysis.users.values())
    mart = dict(_rows(stack.warehouse_dsn, "select arm, count(*) from marts.experiment_user_metrics group by arm"))
    assert mart == analysis.users
    rows = lift_rows(analysis)
    assert sorted((r.arm, r.metric) for r in rows) == sorted((a, m) for a in arms - {"control"} for m in METRICS)
    for r in rows:
        assert r.finite and r.low <= r.lift <= r.high, r
    table = format_lift_table(analysis)
    assert all(m in table for m in METRICS)
    html = Path(result.readout.path)
    assert html.is_file() and str(html).startswith(str(stack.settings.state_dir))
    page = html.read_text()
    assert result.experiment.name in page and page.count("data:image/png") == 2


@pytest.mark.integration
def test_a_run_that_served_nothing_is_an_error(stack, run_id: str, tmp_path) -> None:
    from ltvfeed.errors import UserError
    from ltvfeed.experiments.closed_loop import ClosedLoopConfig, run_closed_loop
    from ltvfeed.simulator.response import ResponseParams

    config = ClosedLoopConfig(users=100, items=40, history_days=30, days=2, response=ResponseParams(visit_scale=0.0))
    with _own_stack(stack, run_id, tmp_path) as own:
        with pytest.raises(UserError, match=r"no simulated user visited in 2 day\(s\): nothing was served"):
            run_closed_loop(own, config, tmp_path / "closed_loop", echo=lambda _: None)
        assert _one(own.warehouse_dsn, "select count(*) from raw.exposures") == 0

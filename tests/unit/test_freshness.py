"""Request-time freshness without a database: the feed API drops items bought since the served generation's
cutoff. The rule (one-off items bought at or after ``since``; repeat-purchase items stay), how the online row is
read, which cutoff the API passes, that the filter checks its references and can be turned off, and that
definitions, constants and the dbt var agree. Against real PostgreSQL and Redis: tests/integration/test_freshness.py."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import yaml

from ltvfeed.errors import UserError
from ltvfeed.features.recent_purchases import (
    FEATURES,
    ITEM_IDS,
    PUSH_SOURCE,
    RECENT_PURCHASE_DAYS,
    REPEATABLE,
    SERVICE,
    TIMES,
    VIEW,
    recent_purchase_frame,
)
from ltvfeed.serving.feed import FeedItem
from ltvfeed.serving.feed_service import data_cutoff
from ltvfeed.serving.feed_store import GenerationMeta
from ltvfeed.serving.freshness import (
    FeastFreshnessFilter,
    FreshnessFilter,
    RecentPurchases,
    drop_bought,
    open_freshness,
)


def at(day: date, hours: float = 0.0) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hours)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def feed_items(ids: list[str]) -> tuple[FeedItem, ...]:
    return tuple(FeedItem(i, score=1 - k / 100, commercial=0.5, purchase=0.1, diversity=1.0) for k, i in enumerate(ids))


# ---------------------------------------------------------------------------------------------- no database


def test_rule_drops_one_off_items_bought_since_the_cutoff() -> None:
    since = at(date(2024, 3, 5))
    bought = RecentPurchases(
        item_ids=["new", "tea", "edge", "before", "old"],
        times=[epoch(since) + 3600, epoch(since) + 60, epoch(since), epoch(since) - 1, epoch(since) - 86_400],
        repeatable=[False, True, False, False, False],
    )
    assert bought.bought_since(since) == {"new", "edge"}  # at the cutoff counts as after it; tea is repeatable
    assert bought.bought_since(since.replace(tzinfo=None)) == {"new", "edge"}  # naive = UTC
    assert bought.bought_since(None) == {"new", "edge", "before", "old"}  # unknown cutoff: every recent purchase
    # a purchase within the second before the cutoff is stored floored, so it stays "before"
    assert RecentPurchases(["x"], [epoch(since) - 1], [False]).bought_since(since - timedelta(seconds=0.5)) == set()

    items = feed_items(["a", "new", "b", "tea", "edge", "before"])
    kept = drop_bought(items, bought.bought_since(since))
    assert [it.item_id for it in kept] == ["a", "b", "tea", "before"]  # order kept, nothing re-ranked
    assert drop_bought(items, frozenset()) is items


def test_online_row_is_read_and_checked() -> None:
    nobody = RecentPurchases.from_online({ITEM_IDS: [None], TIMES: [None], REPEATABLE: [None]})
    assert nobody.bought_since(None) == set()
    row = RecentPurchases.from_online({ITEM_IDS: [["i1"]], TIMES: [[5]], REPEATABLE: [[False]], "user_id": ["u"]})
    assert row.bought_since(None) == {"i1"}
    with pytest.raises(ValueError, match="not aligned"):
        RecentPurchases(["i1", "i2"], [5], [False, False])


def test_since_is_the_generations_cutoff() -> None:
    def meta(**extra: Any) -> GenerationMeta:
        return GenerationMeta("g", "committed", "2024-03-05T02:10:00+00:00", {}, None, None, extra, {}, True)

    assert data_cutoff(meta(as_of="2024-03-05")) == at(date(2024, 3, 5))  # the generator reads data before it
    assert data_cutoff(meta()) == datetime(2024, 3, 5, 2, 10, tzinfo=UTC)  # else: when it was generated
    assert data_cutoff(meta(as_of="not a date")) == datetime(2024, 3, 5, 2, 10, tzinfo=UTC)
    assert data_cutoff(None) is None


def test_definitions_constants_and_dbt_window_agree() -> None:
    from ltvfeed.dbt_runner import dbt_project_dir
    from ltvfeed.features import load_definitions

    project = yaml.safe_load((dbt_project_dir() / "dbt_project.yml").read_text())
    assert project["vars"]["recent_purchase_days"] == RECENT_PURCHASE_DAYS
    repo = load_definitions()
    view = next(v for v in repo.feature_views if v.name == VIEW)
    assert [f.name for f in view.features] == list(FEATURES)
    assert (
        view.stream_source.name == PUSH_SOURCE
        and view.batch_source.get_table_query_string() == "marts.user_recent_purchases"
    )
    services = {s.name: {p.name for p in s.feature_view_projections} for s in repo.feature_services}
    assert services[SERVICE] == {VIEW}
    assert all(VIEW not in views for name, views in services.items() if name != SERVICE)  # training unchanged


def test_filter_checks_its_references_and_can_be_turned_off() -> None:
    with pytest.raises(UserError, match="recent_purchase_repeatable"):
        FeastFreshnessFilter(None, [f"{VIEW}:{ITEM_IDS}", f"{VIEW}:{TIMES}"])
    assert isinstance(FeastFreshnessFilter(None, [f"{VIEW}:{f}" for f in FEATURES]), FreshnessFilter)
    freshness, note = open_freshness(None, enabled=False)
    assert freshness is None and "off" in note
    with pytest.raises(UserError, match="list of user ids"):
        recent_purchase_frame(None, "u1", now=datetime.now(UTC))
    with pytest.raises(UserError, match="timezone"):
        recent_purchase_frame(None, ["u1"], now=datetime.now())

from datetime import UTC, date, datetime

import pytest

from ltvfeed.orchestration.as_of import resolve_as_of


def test_explicit_param_wins():
    logical = datetime(2026, 5, 1, tzinfo=UTC)
    assert resolve_as_of({"as_of": "2026-03-02"}, logical, None) == date(2026, 3, 2)


def test_logical_date_then_run_after():
    assert resolve_as_of({}, datetime(2026, 5, 1, 0, 0, tzinfo=UTC), None) == date(2026, 5, 1)
    assert resolve_as_of({"as_of": None}, None, datetime(2026, 6, 7, 13, 5, tzinfo=UTC)) == date(2026, 6, 7)


def test_bad_param_names_the_problem():
    with pytest.raises(ValueError, match="as_of must be a date"):
        resolve_as_of({"as_of": "yesterday"}, None, None)

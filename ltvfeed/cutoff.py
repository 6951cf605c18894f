"""The cutoff rule, in one place: which day (``as_of``) a run works on, what that day means, and the defaults
that follow from it. Training, serving, the quality gates, Feast and every DAG use these; none re-derives them.

A cutoff ``as_of`` D is a date. Data *before* D is data strictly before D 00:00 UTC (:func:`cutoff_instant`):
features for D read only that, labels read [D, D + horizon). Which D a run works on (:func:`resolve_as_of`): an
explicit ``as_of`` param wins, else the run's logical date (scheduled and backfilled runs), else the ``as_of``
named by the newest triggering asset event (each upstream DAG names the snapshot it published), else that
event's run's own as_of, else ``fallback`` (e.g. the newest snapshot), else the day the run was triggered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ltvfeed.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_HORIZON_DAYS = 365  # LTV label / prediction horizon H when the data allows it
DEFAULT_PROPENSITY_HORIZON_DAYS = 30  # purchase window of the propensity model
MIN_HORIZON_DAYS = 7  # shorter LTV horizons say little about long-term value: refuse rather than train on them
MIN_FEATURE_HISTORY_DAYS = 14  # history the earliest training cutoff needs before it (features to learn from)


def cutoff_instant(as_of: date) -> datetime:
    """as_of 00:00 UTC: data for as_of is every row strictly before this instant (features; a snapshot's
    ``feature_timestamp``); rows at or after it are the future (labels)."""
    return datetime.combine(as_of, time(0), tzinfo=UTC)


def parse_as_of(value: Any, name: str = "as_of") -> date | None:
    """A date from a param / conf / event value (``None`` or empty: None); UserError naming ``name`` otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise UserError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from exc


def required_as_of(value: Any, name: str = "as_of") -> date:
    """:func:`parse_as_of` of a value that must be there: a missing or empty one is the same UserError."""
    parsed = parse_as_of(value, name)
    if parsed is None:
        raise UserError(f"{name} must be a date YYYY-MM-DD, got {value!r}")
    return parsed


def _events(triggering_events: Mapping[Any, Iterable[Any]] | None) -> list[Any]:
    """Every event of a context's ``triggering_asset_events`` (asset -> events), newest first."""
    try:
        events = [e for batch in (triggering_events or {}).values() for e in batch]
    except Exception as exc:  # an accessor that cannot be read must not stop the run: fall back
        log.info("cannot read the triggering asset events: %s", exc)
        return []
    return sorted(events, key=lambda e: getattr(e, "timestamp", None) or datetime.min.replace(tzinfo=UTC), reverse=True)


def resolve_as_of(
    params: Mapping[str, Any],
    logical_date: datetime | None,
    run_after: datetime | None,
    triggering_events: Mapping[Any, Iterable[Any]] | None = None,
    fallback: Callable[[], date] | None = None,
) -> date:
    """The cutoff of a DAG run (see the module doc). Asset-triggered runs have no logical date in Airflow 3."""
    explicit = parse_as_of(params.get("as_of"), "param as_of")
    if explicit is not None:
        return explicit
    if logical_date is not None:
        return logical_date.astimezone(UTC).date() if logical_date.tzinfo else logical_date.date()
    events = _events(triggering_events)
    for event in events:  # the snapshot an upstream DAG named when it published
        value = (getattr(event, "extra", None) or {}).get("as_of")
        try:
            named = parse_as_of(value)
        except UserError as exc:
            raise UserError(f"a triggering asset event carries an invalid as_of {value!r} (want YYYY-MM-DD)") from exc
        if named is not None:
            return named
    for event in events:  # else the as_of of the run that sent the event
        try:
            source = event.source_dag_run
        except Exception as exc:  # the source run may be gone (deleted, or an event posted through the API)
            log.info("cannot read the run behind asset event %s: %s", event, exc)
            continue
        if source is not None:
            return resolve_as_of(dict(source.conf or {}), source.logical_date, source.run_after)
    if fallback is not None:
        return fallback()
    if run_after is None:
        raise UserError("the run has neither an as_of param nor a logical date nor run_after")
    return run_after.astimezone(UTC).date() if run_after.tzinfo else run_after.date()


def default_ltv_horizon(
    first_day: date, observed_end: date, n_cutoffs: int = 1, step_days: int = 30
) -> tuple[int, date]:
    """The LTV horizon H and holdout cutoff a retrain can use on history [first_day, observed_end): holdout =
    observed_end - H, training cutoffs end at holdout - H and reach back (n_cutoffs - 1) * step_days, leaving
    the earliest one MIN_FEATURE_HISTORY_DAYS of history. H = DEFAULT_HORIZON_DAYS when the history allows,
    else the longest that fits; UserError naming the params to set when not even MIN_HORIZON_DAYS fits."""
    span = (observed_end - first_day).days
    room = span - MIN_FEATURE_HISTORY_DAYS - (n_cutoffs - 1) * step_days
    horizon = min(DEFAULT_HORIZON_DAYS, room // 2)
    if horizon < MIN_HORIZON_DAYS:
        fixed = MIN_FEATURE_HISTORY_DAYS + (n_cutoffs - 1) * step_days
        raise UserError(
            f"the history before the cutoff covers {span} day(s) from {first_day}: an LTV horizon H needs 2 H + "
            f"{fixed} days (holdout = data end - H, training cutoffs from holdout - H), and H >= {MIN_HORIZON_DAYS} "
            f"needs {2 * MIN_HORIZON_DAYS + fixed}: use a later as_of, fewer train_cutoffs, or set horizon_days, "
            f"holdout_cutoff and train_cutoff explicitly"
        )
    return horizon, observed_end - timedelta(days=horizon)

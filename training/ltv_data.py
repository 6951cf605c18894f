"""LTV training data: which cutoffs a run uses, the snapshots and labels they need, and the frames it learns from.

A run learns from one or more *training cutoffs* and is judged on a LATER *holdout cutoff*. For a cutoff T the
features are the ``user_features`` snapshot for as_of T (data strictly before T 00:00 UTC, read point-in-time
through Feast's ``ltv_model`` service) and the label is the revenue in [T, T + H) from ``marts.ltv_labels``.
Only complete label windows are used (the whole window observed): an incomplete one is a lower bound and would
teach the model that customers spend less than they do.

Two ways to place the cutoffs (:class:`TrainingPlan`):

- :func:`plan_for_cutoff` (``ltvfeed ltv train --cutoff T``): training cutoffs end at T, the holdout defaults to
  T + H, where the training labels end, so no training label overlaps the holdout's period.
- :func:`plan_for_as_of` (the ``ltv_retrain`` DAG, run for as_of D): everything comes from data before D, so a
  backfilled run for D learns exactly what a run on D learned. Holdout D - H (the latest cutoff whose labels
  are complete on D), latest training cutoff D - 2H (its labels end at the holdout).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ltvfeed.cutoff import DEFAULT_HORIZON_DAYS, cutoff_instant, required_as_of
from ltvfeed.errors import UserError
from ltvfeed.warehouse.ltv_reads import CUTOFF

if TYPE_CHECKING:
    from ltvfeed.infra.stack import Stack

log = logging.getLogger(__name__)

LTV_SERVICE = "ltv_model"  # the Feast feature service holding the model's inputs
# Order timestamps the BG/NBD baseline reads (frequency/recency/T); not model inputs, read beside Feast's frame.
BASELINE_COLUMNS = ("first_order_at", "last_order_at")
LABEL = "label"
DEFAULT_STEP_DAYS = 30


# --------------------------------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class TrainingPlan:
    """The cutoffs of one training run. Everything a run reads follows from this and the warehouse."""

    horizon_days: int
    train_cutoffs: tuple[date, ...]  # ascending
    holdout_cutoff: date
    cutoff_step_days: int = DEFAULT_STEP_DAYS

    def __post_init__(self) -> None:
        if isinstance(self.horizon_days, bool) or not isinstance(self.horizon_days, int) or self.horizon_days < 1:
            raise UserError(f"horizon_days must be a positive whole number of days, got {self.horizon_days!r}")
        if not self.train_cutoffs:
            raise UserError("a training run needs at least one training cutoff")
        if list(self.train_cutoffs) != sorted(set(self.train_cutoffs)):
            raise UserError(f"training cutoffs must be distinct and ascending, got {self.train_cutoffs}")
        if self.holdout_cutoff <= self.train_cutoffs[-1]:
            raise UserError(
                f"the holdout cutoff {self.holdout_cutoff} must be later than the last training cutoff "
                f"{self.train_cutoffs[-1]} (out-of-time evaluation)"
            )

    @property
    def cutoffs(self) -> tuple[date, ...]:
        """Every snapshot the run reads: training cutoffs, then the holdout."""
        return (*self.train_cutoffs, self.holdout_cutoff)

    @property
    def label_overlap_days(self) -> int:
        """Days of the holdout's label window that the last training label window also covers (0 = clean)."""
        end = self.train_cutoffs[-1] + timedelta(days=self.horizon_days)
        return max(0, (end - self.holdout_cutoff).days)

    @property
    def labels_needed_until(self) -> date:
        """The data must reach this day (exclusive) for the holdout's labels to be complete."""
        return self.holdout_cutoff + timedelta(days=self.horizon_days)

    def describe(self) -> str:
        cutoffs = ", ".join(c.isoformat() for c in self.train_cutoffs)
        return f"horizon {self.horizon_days} d, training cutoffs {cutoffs}, holdout {self.holdout_cutoff}"

    def params(self) -> dict[str, str | int]:
        """What MLflow records as the run's parameters: enough to rerun it."""
        return {
            "horizon_days": self.horizon_days,
            "train_cutoffs": ",".join(c.isoformat() for c in self.train_cutoffs),
            "n_train_cutoffs": len(self.train_cutoffs),
            "train_window_start": self.train_cutoffs[0].isoformat(),
            "train_window_end": self.train_cutoffs[-1].isoformat(),
            "cutoff_step_days": self.cutoff_step_days,
            "holdout_cutoff": self.holdout_cutoff.isoformat(),
            "label_overlap_days": self.label_overlap_days,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (Airflow XCom)."""
        return {
            "horizon_days": self.horizon_days,
            "train_cutoffs": [c.isoformat() for c in self.train_cutoffs],
            "holdout_cutoff": self.holdout_cutoff.isoformat(),
            "cutoff_step_days": self.cutoff_step_days,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingPlan:
        return cls(
            horizon_days=int(data["horizon_days"]),
            train_cutoffs=tuple(required_as_of(c, "train_cutoffs") for c in data["train_cutoffs"]),
            holdout_cutoff=required_as_of(data["holdout_cutoff"], "holdout_cutoff"),
            cutoff_step_days=int(data.get("cutoff_step_days", DEFAULT_STEP_DAYS)),
        )


def training_cutoffs(latest: date, count: int, step_days: int) -> tuple[date, ...]:
    """``count`` cutoffs ``step_days`` apart ending at ``latest``, ascending (the training window)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UserError(f"the number of training cutoffs must be a whole number >= 1, got {count!r}")
    if isinstance(step_days, bool) or not isinstance(step_days, int) or step_days < 1:
        raise UserError(f"the step between training cutoffs must be >= 1 day, got {step_days!r}")
    return tuple(latest - timedelta(days=step_days * k) for k in reversed(range(count)))


def plan_for_cutoff(
    cutoff: date,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    n_cutoffs: int = 1,
    step_days: int = DEFAULT_STEP_DAYS,
    holdout_cutoff: date | None = None,
) -> TrainingPlan:
    """Training cutoffs ending at ``cutoff``; holdout ``holdout_cutoff`` or, by default, cutoff + horizon."""
    _check_horizon(horizon_days)
    holdout = holdout_cutoff or cutoff + timedelta(days=horizon_days)
    return TrainingPlan(horizon_days, training_cutoffs(cutoff, n_cutoffs, step_days), holdout, step_days)


def plan_for_as_of(
    as_of: date,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    n_cutoffs: int = 1,
    step_days: int = DEFAULT_STEP_DAYS,
    holdout_cutoff: date | None = None,
    train_cutoff: date | None = None,
) -> TrainingPlan:
    """The plan of a run for as_of D that reads nothing from D on: holdout D - H, last training cutoff
    holdout - H (both overridable; an explicit holdout must still have its labels end by D)."""
    _check_horizon(horizon_days)
    horizon = timedelta(days=horizon_days)
    holdout = holdout_cutoff or as_of - horizon
    if holdout + horizon > as_of:
        raise UserError(
            f"holdout cutoff {holdout} + {horizon_days} days ends after as_of {as_of}: its labels are not observed "
            f"by then; use a holdout cutoff <= {as_of - horizon}"
        )
    latest = train_cutoff or holdout - horizon
    return TrainingPlan(horizon_days, training_cutoffs(latest, n_cutoffs, step_days), holdout, step_days)


def _check_horizon(horizon_days: int) -> None:
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or horizon_days < 1:
        raise UserError(f"horizon_days must be a positive whole number of days, got {horizon_days!r}")


# -------------------------------------------------------------------------------------------------- labels


def complete_labels(
    labels: pd.DataFrame,
    cutoffs: Sequence[date],
    horizon_days: int,
    observed_until: date | None = None,
) -> pd.DataFrame:
    """The label rows of ``cutoffs`` for ``horizon_days``, all from complete windows.

    A row is complete when the mart says so (``is_complete``: its window ends by the data's end) and, given
    ``observed_until``, its window also ends by that day (a run for as_of D must not read labels past D). A
    requested cutoff without complete labels is an error, never a silent lower bound or a silently smaller
    training set.
    """
    needed = {"user_id", CUTOFF, "horizon_days", "revenue", "is_complete"}
    missing = sorted(needed - set(labels.columns))
    if missing:
        raise UserError(f"label frame lacks column(s) {missing}")
    frame = labels[labels["horizon_days"] == horizon_days].copy()
    frame[CUTOFF] = pd.to_datetime(frame[CUTOFF]).dt.date
    window_end = frame[CUTOFF] + timedelta(days=horizon_days)
    ok = frame["is_complete"].astype(bool)
    if observed_until is not None:
        ok &= window_end <= observed_until
    wanted = set(cutoffs)
    problems = []
    for c in sorted(wanted):
        rows = frame[CUTOFF] == c
        if not rows.any():
            problems.append(f"{c}: no labels (no user_features snapshot, or no labels built for H={horizon_days})")
        elif not ok[rows].all():
            end = c + timedelta(days=horizon_days)
            problems.append(f"{c}: window [{c}, {end}) is not complete" + _observed_note(observed_until, end))
    if problems:
        raise UserError("LTV labels are not usable for cutoff " + "; ".join(problems))
    chosen = frame[frame[CUTOFF].isin(wanted) & ok]
    return chosen.sort_values([CUTOFF, "user_id"], kind="stable").reset_index(drop=True)


def _observed_note(observed_until: date | None, end: date) -> str:
    if observed_until is not None and end > observed_until:
        return f" (ends after {observed_until}, the last day this run may read)"
    return " (the data does not reach its end yet)"


# ------------------------------------------------------------------------------------------ the warehouse


def ensure_snapshots(
    stack: Stack,
    as_of_dates: Iterable[date],
    horizon_days: int,
    *,
    echo: Callable[[str], None] | None = None,
    target_path: Path | None = None,
) -> list[date]:
    """The ``user_features`` snapshots missing among ``as_of_dates`` (built and gated as the pipeline does, see
    :mod:`ltvfeed.warehouse.snapshots`), then ``ltv_labels`` rebuilt for ``horizon_days`` (cheap; counts orders that
    arrived late). Returns the dates built."""
    from ltvfeed.dbt_runner import build
    from ltvfeed.warehouse.snapshots import USER_MART, build_missing_snapshots, dbt_target_dir

    with dbt_target_dir(target_path) as target:
        built = build_missing_snapshots(stack, as_of_dates, (USER_MART,), horizon_days, echo=echo, target_path=target)
        build(stack, None, horizon_days, "ltv_labels", target_path=target, echo=echo)
    return built


# ------------------------------------------------------------------------------------------------ features


@dataclass(frozen=True)
class FeatureSchema:
    """The model's input columns, from the Feast service's definitions: String fields are categorical, every
    other type (integers, floats, booleans) numeric."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def without(self, excluded: Iterable[str]) -> FeatureSchema:
        drop = set(excluded)
        unknown = sorted(drop - set(self.columns))
        if unknown:
            raise UserError(f"cannot exclude unknown feature(s) {unknown}; features: {', '.join(self.columns)}")
        return FeatureSchema(
            tuple(c for c in self.numeric if c not in drop), tuple(c for c in self.categorical if c not in drop)
        )


def ltv_feature_schema(service: str = LTV_SERVICE) -> FeatureSchema:
    """Input columns of the LTV model: the features of the ``ltv_model`` service (read from feature_repo/)."""
    from feast.types import PrimitiveFeastType

    from ltvfeed.features import load_definitions

    repo = load_definitions()
    found = [s for s in repo.feature_services if s.name == service]
    if not found:
        raise UserError(f"feature_repo/ defines no feature service {service!r}")
    numeric, categorical = [], []
    for projection in found[0].feature_view_projections:
        for f in projection.features:
            if f.dtype == PrimitiveFeastType.STRING:
                categorical.append(f.name)
            elif isinstance(f.dtype, PrimitiveFeastType):
                numeric.append(f.name)
    return FeatureSchema(tuple(numeric), tuple(categorical))


def as_model_input(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Exactly the schema's columns, typed the way the model was trained and its signature says: numbers
    (booleans too) as float64 with NaN for missing, categories as strings ('unknown' for missing, as the
    marts write it). Training, holdout, scoring and the pyfunc all go through here."""
    missing = [c for c in schema.columns if c not in frame.columns]
    if missing:
        raise UserError(f"feature frame lacks column(s) {missing}")
    out = {}
    for name in schema.numeric:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or column.dtype == object:
            column = column.map(lambda v: float(v) if isinstance(v, bool | np.bool_) else v)
        out[name] = pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()
    for name in schema.categorical:
        column = frame[name]
        values = column.astype(object).where(column.notna(), "unknown")
        out[name] = values.map(str).to_numpy(dtype=object)
    return pd.DataFrame(out, index=frame.index, columns=schema.columns)


@dataclass
class LabelledFrame:
    """Rows (user, cutoff): the Feast features, the baselines' order timestamps, and the horizon revenue."""

    frame: pd.DataFrame  # user_id, cutoff, feature_timestamp, features..., first/last_order_at
    y: np.ndarray
    cutoffs: tuple[date, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    def fingerprint(self) -> str:
        """Short hash of who is in it and their labels: names a holdout in the registry."""
        digest = hashlib.sha256()
        digest.update(self.frame["user_id"].astype(str).str.cat(sep="\n").encode())
        digest.update(np.round(self.y, 2).tobytes())
        return digest.hexdigest()[:10]


def labelled_frame(
    stack: Stack,
    cutoffs: Sequence[date],
    horizon_days: int,
    *,
    observed_until: date | None = None,
    store=None,
) -> LabelledFrame:
    """Complete labels of ``cutoffs`` joined point-in-time (Feast ``ltv_model``) with each user's features at
    that cutoff, sorted by (cutoff, user_id) so a rerun sees the same rows in the same order."""
    from ltvfeed.features import training_frame
    from ltvfeed.warehouse.ltv_reads import baseline_columns, read_labels

    labels = read_labels(stack.warehouse_dsn, cutoffs, horizon_days)
    labels = complete_labels(labels, cutoffs, horizon_days, observed_until)
    entity = pd.DataFrame(
        {
            "user_id": labels["user_id"].astype(str),
            "event_timestamp": [cutoff_instant(c) for c in labels[CUTOFF]],
            LABEL: labels["revenue"].astype("float64"),
        }
    )
    features = training_frame(stack, entity, LTV_SERVICE, store=store)
    features[CUTOFF] = labels[CUTOFF].to_numpy()
    features = features.rename(columns={"event_timestamp": "feature_timestamp"})
    extras = baseline_columns(stack.warehouse_dsn, cutoffs, BASELINE_COLUMNS)
    frame = features.merge(extras, on=["user_id", CUTOFF], how="left", validate="one_to_one")
    y = frame.pop(LABEL).to_numpy(np.float64)
    counts = frame.groupby(CUTOFF).size()
    return LabelledFrame(
        frame=frame,
        y=y,
        cutoffs=tuple(cutoffs),
        meta={"rows_per_cutoff": {c.isoformat(): int(n) for c, n in counts.items()}},
    )

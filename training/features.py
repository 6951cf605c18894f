"""Feature encoding that travels inside the model, so serving cannot drift from training.

Which columns the model uses is decided from the training frame: whatever is present and usable. A shop
with only a transaction log gets an RFM/tenure model; one with events and demographics gets more. Columns
that are entirely missing are dropped with a logged note instead of failing.

Numeric columns: numeric-coercible values (Decimal from PostgreSQL included), log1p when the training values
are all >= 0 (money and counts are heavy-tailed), fill missing with the training median, standardise, clip,
plus a 0/1 "was missing" column where training saw gaps. Categorical columns: a frequency-ordered vocabulary
mapped to embedding indices, with index 0 for missing and 1 for out-of-vocabulary (rare training values map
there too, so that bucket gets trained).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ltvfeed.errors import UserError

log = logging.getLogger(__name__)

MISSING_INDEX = 0
OOV_INDEX = 1
FIRST_VOCAB_INDEX = 2
Z_CLIP = 10.0


@dataclass(frozen=True)
class NumericColumn:
    name: str
    log1p: bool
    missing_indicator: bool


@dataclass(frozen=True)
class CategoricalColumn:
    name: str
    vocabulary: tuple[str, ...]
    embedding_dim: int

    @property
    def num_embeddings(self) -> int:
        return len(self.vocabulary) + FIRST_VOCAB_INDEX


class FeatureEncoder(nn.Module):
    """DataFrame -> (numeric float32 tensor, categorical index tensor). Stats are buffers (saved with the
    weights); the column plan and vocabularies are plain attributes described by :meth:`spec`."""

    def __init__(self, numeric: Sequence[NumericColumn], categorical: Sequence[CategoricalColumn]) -> None:
        super().__init__()
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        k = len(self.numeric)
        self.register_buffer("fill", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("std", torch.ones(k, dtype=torch.float64))

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    @property
    def numeric_width(self) -> int:
        return len(self.numeric) + sum(c.missing_indicator for c in self.numeric)

    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        *,
        categorical_columns: Iterable[str] | None = None,
        exclude_columns: Iterable[str] = (),
        min_category_count: int = 5,
        max_vocabulary: int = 1000,
        max_embedding_dim: int = 16,
    ) -> FeatureEncoder:
        """Plan columns from ``df`` and learn their statistics.

        ``categorical_columns`` forces those columns to be categorical (e.g. numeric-looking ids); the rest
        are inferred: numbers, booleans and numeric-coercible objects are numeric, other text is categorical.
        """
        forced = set(categorical_columns or ())
        unknown = sorted(forced - set(df.columns))
        if unknown:
            log.info("categorical columns not in the frame, ignored: %s", ", ".join(unknown))
        excluded = set(exclude_columns)
        numeric: list[NumericColumn] = []
        categorical: list[CategoricalColumn] = []
        stats: list[tuple[float, float, float]] = []
        for name in df.columns:
            if name in excluded:
                continue
            series = df[name]
            if series.isna().all():
                log.warning("feature %r is entirely missing in the training data: dropped", name)
                continue
            if _is_temporal(series):
                # Timestamps (cutoffs, first/last order) locate a row in time; their information reaches the
                # model as day counts (recency, tenure) instead.
                log.info("column %r holds dates/times: not a feature (use day counts instead)", name)
                continue
            if name not in forced and _is_numeric(series):
                column, column_stats = _fit_numeric(str(name), series)
                numeric.append(column)
                stats.append(column_stats)
            else:
                categorical.append(
                    _fit_categorical(str(name), series, min_category_count, max_vocabulary, max_embedding_dim)
                )
        if not numeric and not categorical:
            raise UserError("no usable feature columns: every column is excluded or entirely missing")
        encoder = cls(numeric, categorical)
        if stats:
            fill, mean, std = (torch.tensor(v, dtype=torch.float64) for v in zip(*stats, strict=True))
            encoder.fill.copy_(fill)
            encoder.mean.copy_(mean)
            encoder.std.copy_(std)
        log.info(
            "features: %d numeric (%s), %d categorical (%s)",
            len(numeric),
            ", ".join(c.name for c in numeric) or "-",
            len(categorical),
            ", ".join(c.name for c in categorical) or "-",
        )
        return encoder

    def encode(self, df: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the model's columns of ``df``; other columns are ignored, absent ones are an error."""
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise UserError(f"input is missing feature columns the model was trained with: {', '.join(missing)}")
        n = len(df)
        numeric = np.zeros((n, self.numeric_width), dtype=np.float32)
        if self.numeric:
            fill = self.fill.numpy()
            mean = self.mean.numpy()
            std = self.std.numpy()
            indicator_at = len(self.numeric)
            for j, column in enumerate(self.numeric):
                x = _to_float(df[column.name])
                is_missing = np.isnan(x)
                if column.log1p:
                    x = np.log1p(np.clip(x, 0.0, None))
                x = np.where(is_missing, fill[j], x)
                numeric[:, j] = np.clip((x - mean[j]) / std[j], -Z_CLIP, Z_CLIP)
                if column.missing_indicator:
                    numeric[:, indicator_at] = is_missing
                    indicator_at += 1
        categorical = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, column in enumerate(self.categorical):
            values, is_missing = _category_strings(df[column.name])
            index = pd.Index(column.vocabulary).get_indexer(values)
            categorical[:, j] = np.where(
                is_missing, MISSING_INDEX, np.where(index < 0, OOV_INDEX, index + FIRST_VOCAB_INDEX)
            )
        return torch.from_numpy(numeric), torch.from_numpy(categorical)

    def spec(self) -> dict[str, Any]:
        """JSON-able description of the column plan (statistics live in the state dict)."""
        return {
            "numeric": [asdict(c) for c in self.numeric],
            "categorical": [{**asdict(c), "vocabulary": list(c.vocabulary)} for c in self.categorical],
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FeatureEncoder:
        numeric = [NumericColumn(**c) for c in spec["numeric"]]
        categorical = [
            CategoricalColumn(name=c["name"], vocabulary=tuple(c["vocabulary"]), embedding_dim=c["embedding_dim"])
            for c in spec["categorical"]
        ]
        return cls(numeric, categorical)


def _is_temporal(series: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        return True
    present = series.dropna()
    # Database drivers hand dates and timestamps over as Python objects.
    return series.dtype == object and len(present) > 0 and isinstance(present.iloc[0], (date, time, timedelta))


def _is_numeric(series: pd.Series) -> bool:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return False
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return True
    # Objects such as Decimal (PostgreSQL numeric) are numbers; text, even "17", stays categorical unless it
    # is made numeric upstream.
    present = series.dropna()
    if any(isinstance(v, str) for v in present.head(1000)):
        return False
    return bool(pd.to_numeric(present, errors="coerce").notna().all())


def _to_float(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series):
        series = series.astype("float64")
    x = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    x[~np.isfinite(x)] = np.nan
    return x


def _fit_numeric(name: str, series: pd.Series) -> tuple[NumericColumn, tuple[float, float, float]]:
    x = _to_float(series)
    present = x[~np.isnan(x)]
    use_log = bool(present.min() >= 0.0)
    if use_log:
        present = np.log1p(present)
    std = float(present.std())
    column = NumericColumn(name=name, log1p=use_log, missing_indicator=bool(np.isnan(x).any()))
    return column, (float(np.median(present)), float(present.mean()), std if std > 0 else 1.0)


def _fit_categorical(
    name: str, series: pd.Series, min_count: int, max_vocabulary: int, max_embedding_dim: int
) -> CategoricalColumn:
    values, is_missing = _category_strings(series)
    counts = pd.Series(values[~is_missing]).value_counts()
    counts = counts[counts >= min_count]
    # Order by frequency, ties by value, so the vocabulary does not depend on row order.
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:max_vocabulary]
    vocabulary = tuple(str(value) for value, _ in ordered)
    if len(vocabulary) < counts.size:
        log.info("feature %r: kept the %d most frequent of %d categories", name, len(vocabulary), counts.size)
    size = len(vocabulary) + FIRST_VOCAB_INDEX
    dim = min(max_embedding_dim, int(size**0.25) + 1)
    return CategoricalColumn(name=name, vocabulary=vocabulary, embedding_dim=dim)


def _category_strings(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Category values as strings; integral floats print as integers so 17 and 17.0 are one category."""
    is_missing = series.isna().to_numpy()
    present = series[~is_missing]
    if pd.api.types.is_float_dtype(present) and np.all(np.mod(present.to_numpy(), 1) == 0):
        present = present.astype("int64")
    values = np.full(len(series), "", dtype=object)
    values[~is_missing] = present.astype(str).to_numpy(dtype=object)
    return values, is_missing

"""Vectorised row validation: every check is a boolean mask over a whole chunk (no Python loop per row).
Good rows come out typed and ready for COPY; bad rows come out with a reason naming each column and its problem."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ltvfeed.ingest.spec import Column, ColumnType, EntitySpec

# Outside text columns these mean "no value" too (exports from spreadsheets and SQL tools write them).
MISSING_TOKENS = ("null", "none", "nan", "na", "n/a")
TRUE_TOKENS = ("true", "t", "yes", "y", "1")
FALSE_TOKENS = ("false", "f", "no", "n", "0")
_LIMITS = {  # values the column type can hold (beyond them the COPY would fail for the whole file)
    ColumnType.MONEY: 1e10,  # numeric(12, 2)
    ColumnType.INTEGER: 2_147_483_647,
    ColumnType.REAL: 3.4e38,
}
_PREVIEW = 60
_FLOAT_NOISE_ULPS = 8  # a few float additions/multiplications stay within this many units in the last place
_TEXT = "string[pyarrow]"


@dataclass
class ValidatedChunk:
    good: pd.DataFrame  # ``_row`` + the spec's columns, typed
    rejected: pd.DataFrame  # ``_row``, ``reason``, ``row_data`` (JSON text of the row as read)
    reasons: Counter[str] = field(default_factory=Counter)  # "<column>: <problem>" -> rows


class _Problems:
    """Accumulates (mask, message) pairs into one reason string per row and counts per reason category. Messages
    are formatted for the flagged rows only."""

    def __init__(self, index: pd.Index) -> None:
        self.bad = pd.Series(False, index=index)
        self.reason = pd.Series("", index=index, dtype=object)
        self.counts: Counter[str] = Counter()

    def add(
        self, mask: pd.Series, category: str, value: pd.Series | None = None, quote: bool = False, suffix: str = ""
    ) -> None:
        """Flag ``mask`` rows with "<category>[ <value>]<suffix>"; ``value`` is the offending text as read."""
        mask = _flags(mask)
        hits = int(mask.sum())
        if not hits:
            return
        message = pd.Series(category, index=mask.index[mask], dtype=object)
        if value is not None:
            shown = value[mask].astype(object)
            shown = shown.str.slice(0, _PREVIEW).where(shown.str.len() <= _PREVIEW, shown.str.slice(0, _PREVIEW) + "…")
            message = message + " " + ("'" + shown + "'" if quote else shown)
        self.reason[mask] = self.reason[mask] + "; " + message + suffix
        self.bad |= mask
        self.counts[category] += hits


def _flags(mask: pd.Series) -> pd.Series:
    """A plain bool Series (Arrow-backed comparisons return nullable booleans; NA counts as False)."""
    return mask.fillna(False).astype(bool)


def validate_chunk(frame: pd.DataFrame, spec: EntitySpec) -> ValidatedChunk:
    """Check ``frame`` (text values or None, named by the spec's columns, plus ``_row``) against ``spec``."""
    problems = _Problems(frame.index)
    typed: dict[str, pd.Series] = {"_row": frame["_row"].astype(np.int64)}
    present_by_column: dict[str, pd.Series] = {}
    for column in spec.columns:
        raw = frame[column.name] if column.name in frame.columns else pd.Series(pd.NA, index=frame.index)
        text = raw.astype(_TEXT).str.strip()  # Arrow string kernels: vectorised in C++
        present = text.notna() & (text != "")
        if column.type is not ColumnType.TEXT:
            present &= ~text.str.lower().isin(MISSING_TOKENS)
        present = _flags(present)
        present_by_column[column.name] = present
        if column.required:
            problems.add(~present, f"{column.name}: missing required value")
        typed[column.name] = _typed(column, text.where(present), present, problems)

    if spec.at_least_one_of:
        none_given = ~np.logical_or.reduce([present_by_column[c] for c in spec.at_least_one_of])
        problems.add(pd.Series(none_given, index=frame.index), f"{' or '.join(spec.at_least_one_of)}: missing value")

    good_mask = ~problems.bad
    good = pd.DataFrame(typed)[good_mask].reset_index(drop=True)
    rejected = _rejected(frame, problems)
    return ValidatedChunk(good=good, rejected=rejected, reasons=problems.counts)


def _typed(column: Column, text: pd.Series, present: pd.Series, problems: _Problems) -> pd.Series:
    """The column's values converted to its type; unconvertible present values are recorded as problems."""
    name = column.name
    if column.type in (ColumnType.TEXT, ColumnType.JSON):
        problems.add(present & text.str.contains("\x00", regex=False), f"{name}: contains a NUL character")
        if column.allowed is not None:
            text = text.str.lower()
            unknown = present & ~_flags(text.isin(column.allowed))
            allowed = ", ".join(column.allowed)
            problems.add(unknown, f"{name}: unknown value", text, quote=True, suffix=f" (allowed: {allowed})")
        return text
    if column.type is ColumnType.TIMESTAMP:
        stamps = _timestamps(text, present)
        problems.add(present & stamps.isna(), f"{name}: not a valid timestamp", text, quote=True)
        return stamps
    if column.type is ColumnType.BOOLEAN:
        lowered = text.str.lower()
        flags = pd.Series(pd.NA, index=text.index, dtype="boolean")
        flags[_flags(lowered.isin(TRUE_TOKENS))] = True
        flags[_flags(lowered.isin(FALSE_TOKENS))] = False
        problems.add(present & flags.isna(), f"{name}: not a boolean", text, quote=True)
        return flags
    return _numbers(column, text, present, problems)


def _numbers(column: Column, text: pd.Series, present: pd.Series, problems: _Problems) -> pd.Series:
    name = column.name
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    values = pd.Series(values, index=text.index)
    finite = np.isfinite(values)
    kind = "an integer" if column.type is ColumnType.INTEGER else "a number"
    problems.add(present & ~finite, f"{name}: not {kind}", text, quote=True)
    if column.type is ColumnType.INTEGER:
        problems.add(present & finite & (values != np.round(values)), f"{name}: not an integer", text, quote=True)
    too_big = present & finite & (values.abs() >= _LIMITS[column.type])
    problems.add(too_big, f"{name}: out of range", text)
    if column.sign == "non_negative":
        problems.add(present & (values < 0), f"{name}: negative value", text)
    elif column.sign == "positive":
        problems.add(present & (values <= 0), f"{name}: zero or negative value", text)
    if column.type is ColumnType.MONEY:
        problems.add(present & finite & _over_two_decimals(text), f"{name}: more than two decimals", text, quote=True)
    valid = present & finite & ~too_big
    if column.type is ColumnType.INTEGER:
        return values.where(valid).round().astype("Int64")
    return values.where(valid)


def _timestamps(text: pd.Series, present: pd.Series) -> pd.Series:
    """ISO 8601 dates or date-times, naive = UTC. pandas parses the bulk (vectorised, nanoseconds: years
    1677-2262); values it cannot hold but PostgreSQL can (years 1-9999, e.g. 0001-01-01 or 9999-12-31 as
    "unknown"/"open end") are parsed by Python, and then the column is microseconds (PostgreSQL's precision)."""
    stamps = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    retry = np.flatnonzero((present & stamps.isna()).to_numpy())
    wide = {int(i): _wide_timestamp(str(text.iloc[i])) for i in retry}
    found = {i: stamp for i, stamp in wide.items() if stamp is not None}
    if not found:
        return stamps
    mask = np.zeros(len(stamps), dtype=bool)
    mask[list(found)] = True
    array = pa.array(stamps.dt.as_unit("us"), pa.timestamp("us", tz="UTC"))
    array = pc.replace_with_mask(array, pa.array(mask), pa.array(list(found.values()), array.type))
    return pd.Series(pd.arrays.ArrowExtensionArray(array), index=text.index)


def _wide_timestamp(value: str) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(value)
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _over_two_decimals(text: pd.Series) -> pd.Series:
    """Money has cents: 12.345 is rejected rather than silently rounded to 12.35 by numeric(12, 2). Exact on the
    text (12.3400 is fine, 1.2345e1 is not); a regex kernel picks the few candidates, Decimal decides. Binary
    float noise is not a third decimal: 25.979999999999997 (a sum computed in floats, e.g. in a Parquet double
    column) is within a few units in the last place of 25.98, and loads as 25.98."""
    candidates = _flags(text.str.contains(r"\.\d{3}|[eE]", regex=True))
    out = pd.Series(False, index=text.index)
    for position in np.flatnonzero(candidates.to_numpy()):
        try:
            value = Decimal(str(text.iloc[position]))
            exponent = value.normalize().as_tuple().exponent
        except InvalidOperation:
            continue  # not a number: reported as such
        if not isinstance(exponent, int) or exponent >= -2:
            continue
        as_float = float(value)
        out.iloc[position] = abs(as_float - float(round(value, 2))) > _FLOAT_NOISE_ULPS * math.ulp(as_float)
    return out


def _rejected(frame: pd.DataFrame, problems: _Problems) -> pd.DataFrame:
    bad = problems.bad
    rows = frame.loc[bad, [c for c in frame.columns if c != "_row"]]
    return pd.DataFrame(
        {
            "_row": frame.loc[bad, "_row"].astype(np.int64).to_numpy(),
            "reason": problems.reason[bad].str.removeprefix("; ").to_numpy(),
            "row_data": rows_as_json(rows),
        }
    )


def rows_as_json(rows: pd.DataFrame) -> list[str]:
    """One JSON object per row (nulls as null), produced in one vectorised call."""
    if rows.empty:
        return []
    lines = rows.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
    out = lines.rstrip("\n").split("\n")
    if len(out) != len(rows):  # pandas escapes newlines inside values; guard the assumption anyway
        raise RuntimeError(f"expected {len(rows)} JSON rows, got {len(out)}")
    return out

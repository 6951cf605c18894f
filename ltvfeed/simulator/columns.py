"""Turning numpy index/number arrays into Arrow columns without a Python loop per row."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ltvfeed.simulator.schema import TS

SECONDS_PER_DAY = 86_400


def sequential_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded number, e.g. ``e0000000042``."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, type=pa.int64()), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def pick(pool: pa.Array, index: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """``pool[index]`` as a string column; rows where ``missing`` is true become null."""
    idx = np.asarray(index, dtype=np.int64)
    if missing is not None and missing.any():
        return pool.take(pa.array(np.where(missing, 0, idx), mask=missing))
    return pool.take(pa.array(idx))


def timestamps(origin: datetime, seconds: np.ndarray) -> pa.Array:
    """Whole seconds after ``origin`` as UTC timestamps."""
    origin_us = int(origin.timestamp()) * 1_000_000
    return pa.array(origin_us + np.asarray(seconds, dtype=np.int64) * 1_000_000, type=pa.int64()).cast(TS)


def money(cents: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """Integer cents as a float64 column (exact to the cent once printed)."""
    values = np.round(np.asarray(cents, dtype=np.int64) / 100.0, 2)
    return pa.array(values, type=pa.float64(), mask=missing)


def constant(value: str | None, n: int) -> pa.Array:
    """The same string (or null) on every row."""
    return pa.nulls(n, pa.string()) if value is None else pa.repeat(pa.scalar(value, pa.string()), n)


def day_seconds(days: np.ndarray) -> np.ndarray:
    """Fractional simulation days -> whole seconds (floor: an event stays on its side of a cut-off)."""
    return np.floor(np.asarray(days) * SECONDS_PER_DAY).astype(np.int64)

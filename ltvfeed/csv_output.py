"""Every CSV file written for people goes through here, because people open CSVs in spreadsheets, and a
spreadsheet executes a cell that starts like a formula (``=cmd|' /C calc'!A0``, ``+SUM(...)``, ``@...``).

As OWASP recommends (CSV injection), a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return gets a leading single quote, which spreadsheets show as text and never evaluate; quotes and separators
inside cells are quoted by the CSV writer. Only text is touched: numbers (a negative amount) are written as
numbers. Not for the COPY streams into PostgreSQL: those are data, read back by the database, never opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def neutralise(value: Any) -> Any:
    """One cell: text a spreadsheet would execute, prefixed with a single quote; anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return QUOTE + value
    return value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell, column name and index label neutralised."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object or isinstance(out[name].dtype, pd.StringDtype):
            out[name] = _neutralised(out[name])
    out.columns = [neutralise(c) for c in out.columns]
    if out.index.dtype == object or isinstance(out.index.dtype, pd.StringDtype):
        out.index = pd.Index(_neutralised(out.index.to_series()), name=neutralise(out.index.name))
    return out


def write_csv(frame: pd.DataFrame, path: Path, **to_csv: Any) -> Path:
    """``frame.to_csv(path, **to_csv)`` with formulas neutralised; ``index_label`` is neutralised too. Rows end in
    CRLF (RFC 4180) unless told otherwise: Python's writer quotes a cell holding a line-terminator character,
    so with CRLF a lone carriage return inside a cell is quoted instead of splitting the row."""
    to_csv.setdefault("lineterminator", "\r\n")
    if isinstance(to_csv.get("index_label"), str):
        to_csv["index_label"] = neutralise(to_csv["index_label"])
    path = Path(path)
    neutralise_frame(frame).to_csv(path, **to_csv)
    return path


def _neutralised(values: pd.Series) -> pd.Series:
    flagged = values.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_PREFIXES)).astype(bool)
    if not flagged.any():
        return values
    out = values.astype(object).copy()
    out[flagged] = QUOTE + values[flagged].astype(str)
    return out

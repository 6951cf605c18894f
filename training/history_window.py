"""Customers described over the history length the network learned from, whatever the log's length.

Why: a network trained on a short log sees customers with at most W days of history (W = the longest tenure
among its training rows, e.g. 27 days on a four-month grocer log predicting 90 days ahead) and is then asked to
score customers with four times that: counts over the whole history (16 orders where training saw at most 4),
tenures and silences it never saw. It extrapolates, and its totals drift (a grocer log came out 16 % low, a
real one 44 % high). So each scored row is put on the training scale first: counts over a span longer than W are
rescaled to W days at the customer's own rate, day counts are capped at W. Rows of the training range are left
as they are, and the BTYD and naive baselines keep the raw history (their models handle any length).

The column rules follow the ``user_features`` mart's naming: ``<measure>_<N>d`` counts over the last N days
(ratios ``<a>_per_<b>_<N>d`` excepted), :data:`WHOLE_HISTORY` counts over the customer's whole history,
:data:`DAY_COUNTS` are days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

TENURE = "tenure_days"
WHOLE_HISTORY = ("frequency", "monetary_total", "referral_orders", "events_total")
DAY_COUNTS = (TENURE, "recency_days", "days_since_last_event")
_WINDOWED = re.compile(r"^(?!.*_per_).+_(\d+)d$")


@dataclass(frozen=True)
class HistoryWindow:
    """The longest customer history (days) among the rows the network trained on."""

    days: float

    @classmethod
    def fit(cls, df: pd.DataFrame) -> HistoryWindow | None:
        """From the training rows' tenure; None when the frame has no usable tenure (nothing to align)."""
        if TENURE not in df.columns:
            return None
        tenure = pd.to_numeric(df[TENURE], errors="coerce").to_numpy(np.float64)
        tenure = tenure[np.isfinite(tenure)]
        if not len(tenure) or tenure.max() <= 0:
            return None
        return cls(float(tenure.max()))

    def align(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` (a copy when anything changes) with every row's history put on at most ``days`` days."""
        if TENURE not in df.columns:
            return df
        tenure = pd.to_numeric(df[TENURE], errors="coerce").to_numpy(np.float64)
        longer = np.isfinite(tenure) & (tenure > self.days)
        if not longer.any():
            return df
        out = df.copy()
        for name in out.columns:
            match = _WINDOWED.match(str(name))
            if name in WHOLE_HISTORY or match:
                span = np.minimum(tenure, float(match.group(1))) if match else tenure
                factor = np.where(np.isfinite(span) & (span > self.days), self.days / np.maximum(span, 1e-9), 1.0)
                if np.any(factor < 1.0):
                    out[name] = pd.to_numeric(out[name], errors="coerce").to_numpy(np.float64) * factor
            elif name in DAY_COUNTS:
                out[name] = np.minimum(pd.to_numeric(out[name], errors="coerce").to_numpy(np.float64), self.days)
        return out

    def to_spec(self) -> dict[str, Any]:
        return {"days": self.days}

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> HistoryWindow | None:
        return cls(float(spec["days"])) if spec else None

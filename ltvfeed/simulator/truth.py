"""The expected future spend of each user given the simulator's hidden traits.

``ground_truth.future_spend`` is one random draw of the future: a decile holding a buyer or two among thousands
of users has a realised mean that is mostly noise. The quantity an LTV model estimates is the expectation, which
the simulator knows in closed form: orders arrive at ``purchase_rate`` per alive day (``activity``), each worth
``spend_level`` on average, while the user is alive (until ``churn_day``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRAIT_COLUMNS = ("purchase_rate", "churn_day", "spend_level")


def expected_future_spend(traits: pd.DataFrame, end_day: float, horizon_days: int) -> pd.Series:
    """E[spend in [end, end + H) | traits] per row of ``traits`` (``ground_truth.user_traits`` columns; days
    counted from the simulation's day 0, ``end_day`` = the observed window's length)."""
    missing = [c for c in TRAIT_COLUMNS if c not in traits.columns]
    if missing:
        raise ValueError(f"traits lack column(s) {', '.join(missing)}")
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    alive = np.clip(np.minimum(traits["churn_day"].to_numpy(float), end_day + horizon_days) - end_day, 0.0, None)
    value = traits["purchase_rate"].to_numpy(float) * alive * traits["spend_level"].to_numpy(float)
    return pd.Series(value, index=traits.index, name="expected_spend")

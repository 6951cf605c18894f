"""The BG/NBD log is the process its baseline assumes: fitting BG/NBD + Gamma-Gamma on it recovers the
parameters it was drawn with (so "never below the classics" is judged there against the right model)."""

from __future__ import annotations

import pandas as pd
import pytest

from ltvfeed.simulator.transaction_logs import START, bgnbd_log
from ltvfeed.training.baselines import fit_bgnbd, fit_gamma_gamma


def test_bgnbd_log_recovers_the_parameters_it_was_drawn_with():
    days = 730
    log = bgnbd_log(n=6000, days=days, seed=1)
    day = (pd.to_datetime(log["order_date"]) - pd.Timestamp(START)).dt.days
    orders = log.assign(day=day).groupby("customer_id")
    first, last, count = orders["day"].min(), orders["day"].max(), orders.size()
    frequency = (count - 1).to_numpy()
    params = fit_bgnbd(frequency, (last - first).to_numpy(), (days - first).to_numpy())
    assert params.r == pytest.approx(0.5, rel=0.2) and params.alpha == pytest.approx(20.0, rel=0.25)
    assert params.a == pytest.approx(0.8, rel=0.3) and params.b == pytest.approx(2.5, rel=0.3)

    repeat_mean = log.assign(day=day).sort_values(["customer_id", "day"]).groupby("customer_id")["amount"]
    repeat_mean = repeat_mean.apply(lambda a: a.iloc[1:].mean() if len(a) > 1 else 0.0).to_numpy()
    gg = fit_gamma_gamma(frequency, repeat_mean)
    assert gg.p * gg.gamma / (gg.q - 1) == pytest.approx(40.0, rel=0.15)  # the mean order value drawn

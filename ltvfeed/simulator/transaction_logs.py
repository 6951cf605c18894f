"""Plain transaction logs (customer_id, order_date, amount) shaped like real shops rather than like our simulated
shop: what ``ltvfeed ltv backtest`` and ``ltv predict`` must cope with. Each generator is seeded and cheap.

- :func:`churning_cohort_log`: one acquisition cohort; 70 % never buy again, the rest a few times (a few many),
  heavy-tailed order values, a twice-yearly season.
- :func:`grocer_log`: a short history in which almost everyone keeps buying on their own cycle with their own
  basket: the signal is rate x basket, and a short log must not inflate predictions.
- :func:`sparse_seasonal_log`: customers arriving over two years with one to three orders in all, long gaps, a
  December peak and very heavy-tailed values.
- :func:`bgnbd_log`: drawn from BG/NBD + Gamma-Gamma itself, the world in which that baseline is exactly right:
  the hardest log for "never below the classics".
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

START = date(2024, 1, 1)


def churning_cohort_log(n: int = 800, seed: int = 0, start: date = START) -> pd.DataFrame:
    """Everyone acquired in the first 45 days; 70 % never order again; the rest order a few more times (most 1-2,
    a few many) over a personal lifetime, more often in the season's peaks; nothing after day 600."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 45, n)
    value = rng.lognormal(3.5, 0.9, n)  # a customer's typical order value: heavy tail
    rows = [(i, int(first[i]), value[i] * rng.lognormal(0, 0.3)) for i in range(n)]
    returns = rng.random(n) < 0.3
    for i in np.flatnonzero(returns):
        lifetime = rng.exponential(300)
        extra = 1 + rng.poisson(1.0 if rng.random() < 0.8 else 8.0)
        days = first[i] + rng.uniform(1, 2 + lifetime, extra * 3)
        season = 0.5 + 0.5 * np.sin(2 * np.pi * days / 365.0) ** 2  # thinning: peaks twice a year
        kept = days[rng.random(days.size) < season][:extra]
        rows += [(i, int(d), value[i] * rng.lognormal(0, 0.3)) for d in kept if d < 600]
    return _log(rows, "c", start)


def grocer_log(
    n: int = 600, history_days: int = 117, future_days: int = 150, seed: int = 0, start: date = START
) -> pd.DataFrame:
    """Customers join over the first third of a short history and then shop on their own cycle (weekly for most,
    every few days to a month for some) with their own basket size; only ~5 % stop (on a random day), so nearly
    everyone has revenue in any window."""
    rng = np.random.default_rng(seed)
    days_total = history_days + future_days
    cycle = 7.0 * rng.lognormal(0.0, 0.45, n)  # days between a customer's shops
    basket = rng.lognormal(3.8, 0.6, n)
    first = rng.integers(0, max(history_days // 3, 1), n)
    stop = np.where(rng.random(n) < 0.05, rng.integers(0, days_total, n), days_total)
    rows = []
    for i in range(n):
        day = float(first[i])
        while day < min(stop[i], days_total):
            rows.append((i, int(day), basket[i] * rng.lognormal(0, 0.25)))
            day += max(1.0, cycle[i] * rng.lognormal(0, 0.3))
    return _log(rows, "g", start)


def sparse_seasonal_log(n: int = 2000, days: int = 1095, seed: int = 0, start: date = START) -> pd.DataFrame:
    """Arrivals spread over the first two thirds; one to three orders per customer in all (geometric), gaps of
    months, each order day thinned towards December, order values lognormal with a very heavy tail."""
    rng = np.random.default_rng(seed)
    arrival = rng.integers(0, days * 2 // 3, n)
    orders = np.minimum(rng.geometric(0.55, n), 3)
    value = rng.lognormal(3.2, 1.2, n)
    rows = []
    for i in range(n):
        day = float(arrival[i])
        placed = 0
        while placed < orders[i] and day < days:
            month_peak = 0.35 + 0.65 * (((start + timedelta(days=int(day))).month == 12) or rng.random() < 0.4)
            if rng.random() < month_peak:
                rows.append((i, int(day), value[i] * rng.lognormal(0, 0.5)))
                placed += 1
            day += rng.exponential(150.0)
    return _log(rows, "s", start)


def bgnbd_log(n: int = 2000, days: int = 730, seed: int = 0, start: date = START) -> pd.DataFrame:
    """Fader, Hardie & Lee's buy-till-you-die process with Gamma-Gamma values, the process of
    :func:`ltvfeed.simulator.btyd_customers.simulate_bgnbd` as a log: arrivals over the first half; a first
    order, then orders at a personal Poisson rate (~ Gamma(0.5, mean one per 40 days)) until the customer drops
    out, with a personal probability (~ Beta(0.8, 2.5)) after each repeat order; order values Gamma(3, rate nu),
    nu ~ Gamma(4, rate 40) per customer (mean 40)."""
    rng = np.random.default_rng(seed)
    arrival = rng.integers(0, days // 2, n)
    rate = rng.gamma(0.5, 1 / 20.0, n)
    churn = rng.beta(0.8, 2.5, n)
    nu = rng.gamma(4.0, 1 / 40.0, n)
    rows = []
    for i in range(n):
        day = float(arrival[i])
        while day < days:
            rows.append((i, int(day), rng.gamma(3.0, 1 / nu[i])))
            if day > arrival[i] and rng.random() < churn[i]:
                break
            day += rng.exponential(1 / rate[i])
    return _log(rows, "b", start)


def _log(rows: list[tuple[int, int, float]], prefix: str, start: date) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer", "day", "amount"])
    return pd.DataFrame(
        {
            "customer_id": prefix + frame["customer"].astype(str).str.zfill(5),
            "order_date": [(start + timedelta(days=int(d))).isoformat() for d in frame["day"]],
            "amount": frame["amount"].round(2),
        }
    )

"""Synthetic customers with known structure, for tests and quick quality checks of the LTV models.

``simulate_bgnbd`` draws the exact buy-till-you-die process of Fader, Hardie & Lee (2005) with Gamma-Gamma
order values, so baseline fits can be checked against known parameters. ``make_shop`` builds a feature
frame like the warehouse would (RFM, engagement, demographics) on top of that process, where categorical
traits shift purchase rate, churn and spend, and engagement reveals who is still alive: information a
buy-till-you-die model cannot use and a network can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class BgnbdSample:
    """Per-customer summary of a simulated BG/NBD + Gamma-Gamma history (times in days)."""

    frequency: np.ndarray  # repeat purchases in (0, T]
    recency: np.ndarray  # time of the last purchase since the first (0 if no repeats)
    T: np.ndarray  # age: time from first purchase to the end of observation
    monetary_value: np.ndarray  # mean repeat purchase value (0 if no repeats)
    first_value: np.ndarray  # value of the first purchase (at time 0)
    future_purchases: np.ndarray  # purchases in (T, T + horizon]
    future_value: np.ndarray  # their total value
    alive_at_T: np.ndarray  # bool: not yet churned at T
    death_time: np.ndarray  # when the customer churned (inf if never within T + horizon)


def simulate_bgnbd(
    rng: np.random.Generator,
    T: np.ndarray,
    *,
    lam: np.ndarray,
    churn: np.ndarray,
    spend_rate: np.ndarray,
    spend_shape: float,
    horizon_days: float = 0.0,
) -> BgnbdSample:
    """Simulate customers given their individual latent parameters.

    Each customer buys at time 0, then at Poisson rate ``lam`` while alive; after each repeat purchase they
    churn with probability ``churn``. Order values are Gamma(``spend_shape``, rate ``spend_rate``) (the
    Gamma-Gamma model). Purchases after T up to T + ``horizon_days`` are the future.
    """
    n = len(T)
    T = np.asarray(T, dtype=np.float64)
    end = T + horizon_days
    t = np.zeros(n)
    frequency = np.zeros(n, dtype=np.int64)
    recency = np.zeros(n)
    value_sum = np.zeros(n)
    future_purchases = np.zeros(n, dtype=np.int64)
    future_value = np.zeros(n)
    death_time = np.full(n, np.inf)
    first_value = rng.gamma(spend_shape, 1.0 / spend_rate)
    active = np.arange(n)
    while active.size:
        t[active] += rng.exponential(1.0 / lam[active])
        active = active[t[active] <= end[active]]
        values = rng.gamma(spend_shape, 1.0 / spend_rate[active])
        observed = t[active] <= T[active]
        past, future = active[observed], active[~observed]
        frequency[past] += 1
        recency[past] = t[past]
        value_sum[past] += values[observed]
        future_purchases[future] += 1
        future_value[future] += values[~observed]
        dies = rng.random(active.size) < churn[active]
        death_time[active[dies]] = t[active[dies]]
        active = active[~dies]
    monetary = np.divide(value_sum, frequency, out=np.zeros(n), where=frequency > 0)
    return BgnbdSample(
        frequency=frequency,
        recency=recency,
        T=T,
        monetary_value=monetary,
        first_value=first_value,
        future_purchases=future_purchases,
        future_value=future_value,
        alive_at_T=death_time > T,
        death_time=death_time,
    )


def simulate_bgnbd_population(
    n: int,
    *,
    r: float,
    alpha: float,
    a: float,
    b: float,
    p: float = 3.0,
    q: float = 4.0,
    gamma: float = 100.0,
    T_range: tuple[float, float] = (180.0, 365.0),
    horizon_days: float = 0.0,
    seed: int = 0,
) -> BgnbdSample:
    """Draw a population from the BG/NBD (r, alpha, a, b) and Gamma-Gamma (p, q, gamma) priors."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, size=n)
    churn = rng.beta(a, b, size=n)
    spend_rate = rng.gamma(q, 1.0 / gamma, size=n)
    T = rng.uniform(*T_range, size=n)
    return simulate_bgnbd(rng, T, lam=lam, churn=churn, spend_rate=spend_rate, spend_shape=p, horizon_days=horizon_days)


_COUNTRIES = {"US": 1.4, "DE": 1.15, "FR": 1.0, "GB": 1.1, "PL": 0.6, "BR": 0.55, "IN": 0.45}
_PARTNERS = {"direct": 6.0, "p001": 4.0, "p002": 2.5, "p003": 3.0, "p004": 1.2}
# favourite category: (purchase-rate multiplier, spend multiplier)
_CATEGORIES = {
    "grocery": (2.2, 0.45),
    "beauty": (1.4, 0.8),
    "fashion": (1.0, 1.0),
    "home": (0.7, 1.5),
    "electronics": (0.5, 2.6),
}
CUTOFF = pd.Timestamp("2026-01-01", tz="UTC")


def make_shop(
    n: int, horizon_days: int = 90, seed: int = 0, non_buyer_share: float = 0.25
) -> tuple[pd.DataFrame, np.ndarray]:
    """A feature frame at a cutoff, laid out like the warehouse's ``user_features`` mart, and each user's
    revenue in the next ``horizon_days``.

    Buyers follow BG/NBD + Gamma-Gamma; ``non_buyer_share`` of users registered without ordering yet (a few
    convert in the horizon, more likely the more they browse). Columns (mart names and meanings):
    user_id, feature_timestamp (the cutoff); RFM: frequency (orders, first included), recency_days (days
    since the last order, or since first seen), tenure_days (days since first seen), monetary_total,
    monetary_avg, orders_90d, first_order_at, last_order_at; engagement: clicks_30d, add_to_cart_30d,
    days_since_last_event; demographics: age (with gaps), gender ("unknown" for some, no effect), country,
    acquisition_partner_id, favourite_category.
    """
    rng = np.random.default_rng(seed)
    country = rng.choice(list(_COUNTRIES), size=n, p=[0.3, 0.2, 0.12, 0.12, 0.1, 0.1, 0.06])
    partner = rng.choice(list(_PARTNERS), size=n, p=[0.35, 0.2, 0.2, 0.1, 0.15])
    category = rng.choice(list(_CATEGORIES), size=n, p=[0.2, 0.2, 0.25, 0.2, 0.15])
    age = np.clip(rng.normal(38, 12, size=n), 18, 85).round()
    gender = rng.choice(np.array(["female", "male", "other"], dtype=object), size=n, p=[0.5, 0.45, 0.05])

    rate_mult = np.array([_CATEGORIES[c][0] for c in category])
    spend_mult = np.array([_COUNTRIES[c] for c in country]) * np.array([_CATEGORIES[c][1] for c in category])
    spend_mult *= 1.0 + 0.01 * (age - 38)
    lam = rng.gamma(0.9, 1.0 / 35.0, size=n) * rate_mult  # mean ~ one purchase every 5-6 weeks
    churn = rng.beta(1.0, np.array([_PARTNERS[p] for p in partner]))
    mean_order = 60.0 * spend_mult * rng.lognormal(0.0, 0.35, size=n)
    spend_shape = 4.0
    T = rng.uniform(30.0, 540.0, size=n)
    sample = simulate_bgnbd(
        rng, T, lam=lam, churn=churn, spend_rate=spend_shape / mean_order, spend_shape=spend_shape,
        horizon_days=horizon_days,
    )  # fmt: skip
    alive = sample.alive_at_T
    # Engagement is a noisy view of being alive: slow buyers often have quiet months, and some churned
    # customers ("lurkers") still browse without buying.
    lurker = ~alive & (rng.random(n) < 0.25)
    clicks = rng.poisson(np.where(alive, 0.3 + 60.0 * lam, np.where(lurker, 1.5, 0.1)))
    add_to_cart = rng.binomial(clicks, np.where(alive, 0.25, 0.1))
    since_event = np.where(
        alive | lurker,
        rng.exponential(1.0 / (0.03 + 2.0 * lam)),
        (T - np.minimum(sample.death_time, T)) + rng.exponential(10.0, size=n),
    )
    future = sample.future_value.copy()

    # Registered users who have not ordered yet: interest drives both browsing and converting.
    non_buyer = rng.random(n) < non_buyer_share
    interest = rng.beta(1.0, 8.0, size=n)
    converts = rng.random(n) < 0.6 * interest
    first_orders = 1 + rng.poisson(0.3, size=n)
    future[non_buyer] = np.where(converts, rng.gamma(spend_shape * first_orders, mean_order / spend_shape), 0.0)[
        non_buyer
    ]
    clicks[non_buyer] = rng.poisson(12.0 * interest)[non_buyer]
    add_to_cart[non_buyer] = rng.binomial(clicks, 0.15)[non_buyer]
    since_event[non_buyer] = rng.exponential(1.0 / (0.02 + interest))[non_buyer]

    orders = np.where(non_buyer, 0, sample.frequency + 1)
    monetary_total = np.where(non_buyer, 0.0, sample.first_value + sample.monetary_value * sample.frequency)
    first_order_at = pd.Series(CUTOFF - pd.to_timedelta(T, unit="D")).where(~non_buyer)
    last_order_at = first_order_at + pd.to_timedelta(sample.recency, unit="D")
    # Orders in the last 90 days are not tracked individually here: count the last one if it was recent.
    recency_days = np.where(non_buyer, T, T - sample.recency)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{seed}_{i}" for i in range(n)],
            "feature_timestamp": CUTOFF,
            "frequency": orders,
            "recency_days": np.floor(recency_days).astype(int),
            "tenure_days": np.floor(T).astype(int),
            "monetary_total": monetary_total.round(2),
            "monetary_avg": np.divide(monetary_total, orders, out=np.zeros(n), where=orders > 0).round(2),
            "orders_90d": ((recency_days <= 90) & ~non_buyer).astype(int),
            "first_order_at": first_order_at,
            "last_order_at": last_order_at,
            "clicks_30d": clicks,
            "add_to_cart_30d": add_to_cart,
            "days_since_last_event": np.minimum(since_event, T).round().astype(int),
            "age": np.where(rng.random(n) < 0.2, np.nan, age),
            "gender": np.where(rng.random(n) < 0.1, "unknown", gender),
            "country": country,
            "acquisition_partner_id": partner,
            "favourite_category": category,
        }
    )
    return frame, future.round(2)

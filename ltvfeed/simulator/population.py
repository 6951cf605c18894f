"""Referral partners and users with hidden traits.

The traits follow the classic customer-base models so that the data has the structure LTV models expect:
Gamma-mixed purchase rates (BG/NBD-like heterogeneity), a per-user churn hazard (Pareto/NBD-like lifetimes),
Gamma-distributed basket sizes (Gamma-Gamma-like spend), Dirichlet category tastes. Demographics and the
acquiring partner shift those traits a little, so they carry a weak but real signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ltvfeed.simulator.catalog import PRICE_BINS
from ltvfeed.simulator.columns import sequential_ids
from ltvfeed.simulator.config import SimulationConfig
from ltvfeed.simulator.vocab import CATEGORIES, COUNTRIES, GENDER_SHARES

TASTE_CONCENTRATION = 0.35  # Dirichlet alpha per category at average weight: small = focused tastes


@dataclass(frozen=True)
class Partners:
    ids: pa.Array
    quality: np.ndarray  # multiplies the purchase rate and lengthens the lifetime of the users they bring
    popularity: np.ndarray  # share of acquisitions and of referral traffic


def draw_partners(config: SimulationConfig) -> Partners:
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xBA27]))
    n = config.n_partners
    return Partners(
        ids=sequential_ids("p", np.arange(1, n + 1), 3),
        quality=rng.lognormal(0.0, 0.4, size=n),
        popularity=rng.dirichlet(np.full(n, 2.0)),
    )


@dataclass(frozen=True)
class Population:
    """A chunk of users: arrays indexed by position in the chunk."""

    first_index: int  # global number of the chunk's first user (user ids count from 1)
    signup_day: np.ndarray  # simulation day (negative: before the observed window)
    churn_day: np.ndarray
    purchase_rate: np.ndarray  # expected orders per alive day
    conversion: np.ndarray  # share of sessions that end in an order
    session_rate: np.ndarray  # sessions per alive day
    basket: np.ndarray  # basket-size multiplier (1 = average): more lines, more units
    price_sensitivity: np.ndarray  # 0..1
    price_bin: np.ndarray
    taste: np.ndarray  # (users, categories), rows sum to 1
    country: np.ndarray
    birth_year: np.ndarray
    birth_year_missing: np.ndarray
    gender: np.ndarray
    gender_missing: np.ndarray
    partner: np.ndarray  # acquiring partner index, -1 = direct
    partner_share: np.ndarray  # share of sessions arriving through a referral partner
    views_mean: np.ndarray  # browsing views per session besides purchased items
    dwell_scale: np.ndarray

    @property
    def n(self) -> int:
        return len(self.signup_day)


def _signup_days(config: SimulationConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    p = config.params
    before = rng.random(n) < p.pre_window_signup_share
    # inside the window signups grow over time (density rising towards the end)
    inside = config.days * rng.random(n) ** (1 / 1.3)
    return np.where(before, -p.pre_window_days * rng.random(n), inside)


def _tastes(gender: np.ndarray, age_z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    weight = np.array([c.weight for c in CATEGORIES])
    skew = np.array([c.female_skew for c in CATEGORIES])
    slope = np.array([c.age_slope for c in CATEGORIES])
    gender_power = np.select([gender == 0, gender == 1], [1.0, -1.0], 0.0)
    alpha = (
        TASTE_CONCENTRATION
        * (weight / weight.mean())[None, :]
        * skew[None, :] ** gender_power[:, None]
        * np.exp(slope[None, :] * age_z[:, None])
    )
    draws = rng.gamma(alpha) + 1e-12
    return draws / draws.sum(axis=1, keepdims=True)


def draw_population(
    config: SimulationConfig, partners: Partners, first_index: int, n: int, rng: np.random.Generator
) -> Population:
    p = config.params
    signup = _signup_days(config, n, rng)
    age = np.clip(rng.normal(40.0, 13.0, size=n), 18, 85)
    age_z = (age - 40.0) / 10.0
    gender = rng.choice(len(GENDER_SHARES), size=n, p=GENDER_SHARES)
    shares = np.array([c[1] for c in COUNTRIES])
    country = rng.choice(len(COUNTRIES), size=n, p=shares / shares.sum())
    acquired = rng.random(n) < p.partner_acquired_share
    partner = np.where(acquired, rng.choice(config.n_partners, size=n, p=partners.popularity), -1)
    quality = np.where(acquired, partners.quality[np.maximum(partner, 0)], 1.0)

    country_effect = np.array([c[2] for c in COUNTRIES])[country]
    base_rate = rng.gamma(p.purchase_rate_shape, p.mean_purchase_rate / p.purchase_rate_shape, size=n)
    wanted_rate = base_rate * country_effect * quality * np.exp(0.06 * age_z)
    hazard = (
        rng.gamma(p.hazard_shape, 1.0 / (p.mean_lifetime_days * p.hazard_shape), size=n)
        / quality**0.8
        * np.exp(-0.12 * age_z)
    )
    churn = signup + rng.exponential(1.0 / hazard)
    conversion = rng.beta(p.conversion_a, p.conversion_b, size=n)
    session_rate = np.minimum(wanted_rate / conversion, p.max_sessions_per_day)
    basket = rng.gamma(5.0, 1 / 5.0, size=n) * np.exp(0.05 * age_z)
    sensitivity = 1.0 / (1.0 + np.exp(-(rng.normal(0.0, 1.0, size=n) - 0.8 * np.log(basket))))
    return Population(
        first_index=first_index,
        signup_day=signup,
        churn_day=churn,
        purchase_rate=session_rate * conversion,
        conversion=conversion,
        session_rate=session_rate,
        basket=basket,
        price_sensitivity=sensitivity,
        price_bin=np.minimum((sensitivity * PRICE_BINS).astype(np.int64), PRICE_BINS - 1),
        taste=_tastes(gender, age_z, rng),
        country=country,
        birth_year=(config.end_date.year - age).astype(np.int32),
        birth_year_missing=rng.random(n) < p.missing_birth_year_share,
        gender=gender,
        gender_missing=rng.random(n) < p.missing_gender_share,
        partner=partner,
        partner_share=np.where(acquired, rng.beta(5.5, 4.5, size=n), rng.beta(2.0, 8.0, size=n)),
        views_mean=rng.gamma(3.0, p.extra_views_mean / 3.0, size=n),
        dwell_scale=rng.lognormal(0.0, 0.4, size=n),
    )


def sample_categories(taste: np.ndarray, user: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row, drawn from that row's user's taste (one ``searchsorted`` for all rows)."""
    n_users, n_cat = taste.shape
    cdf = np.cumsum(taste, axis=1)
    cdf[:, -1] = 1.0
    flat = (cdf + np.arange(n_users)[:, None]).ravel()
    pos = np.searchsorted(flat, user + rng.random(len(user)), side="right")
    return np.clip(pos - user * n_cat, 0, n_cat - 1)

"""What to simulate: sizes, seed, the observed window and the hidden future horizons."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from ltvfeed.errors import UserError
from ltvfeed.simulator.vocab import CATEGORIES

DEFAULT_HORIZONS = (90, 180, 365)


@dataclass(frozen=True)
class BehaviourParams:
    """Knobs of the generative story; defaults give a plausible mid-size web shop."""

    pre_window_signup_share: float = 0.35  # users who signed up before the observed window starts
    pre_window_days: float = 365.0  # how far before the window those signups reach
    mean_purchase_rate: float = 0.012  # orders per alive day, population mean (BG/NBD-like Gamma mixing)
    purchase_rate_shape: float = 0.6  # Gamma shape: small = very heterogeneous buyers
    mean_lifetime_days: float = 300.0  # mean days from signup to churn
    hazard_shape: float = 2.0  # Gamma shape of the churn hazard across users
    conversion_a: float = 2.0  # Beta(a, b): share of browsing sessions that end in an order
    conversion_b: float = 9.0
    max_sessions_per_day: float = 2.0
    extra_views_mean: float = 2.5  # product views per session besides the ones bought
    lines_mean: float = 0.35  # extra order lines per order at average spend level
    partner_acquired_share: float = 0.55  # users brought by a referral partner (rest: direct)
    search_share: float = 0.3  # sessions that start with a search
    abandoned_cart_share: float = 0.25  # non-buying sessions that still add something to the cart
    wishlist_per_day: float = 0.01
    saved_per_day: float = 0.005
    profile_share: float = 0.35  # users who state favourite categories in their profile
    in_stock_share: float = 0.95
    # Re-buying: a line of a consumable item is bought again by the same user, with this probability, in their
    # first order after one cycle of that item (item cycles: lognormal around the median, per item), and so on
    # for the re-bought line (up to REBUY_ROUNDS in a row). The re-bought item replaces one line of that order,
    # so baskets and spend keep their distributions while history becomes predictive of what comes next.
    rebuy_share: float = 0.7
    rebuy_cycle_days: float = 21.0
    rebuy_cycle_sigma: float = 0.5
    missing_birth_year_share: float = 0.08
    missing_gender_share: float = 0.12


def default_end_date() -> date:
    """Today (UTC): the window ends at today's UTC midnight, exclusive."""
    return datetime.now(UTC).date()


def parse_horizons(text: str) -> tuple[int, ...]:
    """``"90,180,365"`` -> (90, 180, 365); UserError naming the bad part otherwise."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = tuple(sorted({int(p) for p in parts}))
    except ValueError as exc:
        raise UserError(f"--horizons must be comma-separated whole days like 90,180,365, got {text!r}") from exc
    if not values or values[0] <= 0:
        raise UserError(f"--horizons needs at least one positive number of days, got {text!r}")
    return values


def parse_end_date(text: str | None) -> date:
    if not text:
        return default_end_date()
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise UserError(f"--end-date must be a date YYYY-MM-DD, got {text!r}") from exc


@dataclass(frozen=True)
class SimulationConfig:
    """One simulated shop. Same config (seed included) -> the same data, byte for byte."""

    n_users: int
    n_items: int
    days: int
    seed: int = 0
    end_date: date = field(default_factory=default_end_date)
    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    n_partners: int = 12
    chunk_users: int = 5000  # users simulated together; bounds memory, part of the seed's identity
    params: BehaviourParams = field(default_factory=BehaviourParams)

    def __post_init__(self) -> None:
        if self.n_users < 1:
            raise UserError(f"--users must be at least 1, got {self.n_users}")
        if self.n_items < len(CATEGORIES):
            raise UserError(f"--items must be at least {len(CATEGORIES)} (one per category), got {self.n_items}")
        if self.days < 1:
            raise UserError(f"--days must be at least 1, got {self.days}")
        if self.seed < 0:
            raise UserError(f"--seed must be zero or positive, got {self.seed}")
        if not self.horizons or min(self.horizons) < 1:
            raise UserError(f"horizons must be positive days, got {self.horizons}")
        if self.n_partners < 1:
            raise UserError(f"n_partners must be at least 1, got {self.n_partners}")
        if self.chunk_users < 1:
            raise UserError(f"chunk_users must be at least 1, got {self.chunk_users}")

    @property
    def end(self) -> datetime:
        """End of the observed window (exclusive), UTC midnight."""
        return datetime(self.end_date.year, self.end_date.month, self.end_date.day, tzinfo=UTC)

    @property
    def start(self) -> datetime:
        """Start of the observed window: day 0 of the simulation."""
        return self.end - timedelta(days=self.days)

    @property
    def total_days(self) -> int:
        """Observed window plus the longest hidden horizon."""
        return self.days + max(self.horizons)

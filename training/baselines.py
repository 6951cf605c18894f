"""Baselines the LTV network must beat, with the same ``fit(df) / predict(df)`` face.

- ``NaiveBaseline``: past spend rate carried forward, monetary_total / tenure_days * H.
- ``BtydBaseline``: buy-till-you-die. BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy
  way") for the number of purchases and P(alive), Gamma-Gamma (Fader & Hardie, "The Gamma-Gamma model of
  monetary value") for the value per purchase, both fitted by maximum likelihood with scipy.

The model functions take the classic per-customer summary, times in days: frequency x (repeat purchases),
recency t_x (time of the last purchase since the first; 0 without repeats), T (time since the first
purchase), monetary value (mean repeat purchase value). ``btyd_summary`` derives it from a frame laid out
like the warehouse's ``user_features`` mart (orders counted with the first, order timestamps, the cutoff).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import gammaln, hyp2f1

from ltvfeed.errors import UserError

log = logging.getLogger(__name__)

_LOG_BOUND = 15.0  # parameters live in exp([-15, 15]): wide, but keeps the optimiser out of overflow


@dataclass(frozen=True)
class BgnbdParams:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float


def bgnbd_log_likelihood(params: BgnbdParams, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-customer log L(r, alpha, a, b | x, t_x, T) (FHL 2005, eq. 6):

    L = A1 * A2 * (A3 + [x > 0] * A4), with A1 = Gamma(r+x) alpha^r / Gamma(r),
    A2 = Gamma(a+b) Gamma(b+x) / (Gamma(b) Gamma(a+b+x)), A3 = (alpha+T)^-(r+x),
    A4 = a / (b+x-1) * (alpha+t_x)^-(r+x).
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = np.asarray(frequency, dtype=np.float64)
    t_x = np.asarray(recency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    log_a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    log_a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    log_a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    log_a4 = np.full_like(x, -np.inf)
    log_a4[repeat] = np.log(a) - np.log(b + x[repeat] - 1) - (r + x[repeat]) * np.log(alpha + t_x[repeat])
    return log_a1 + log_a2 + np.logaddexp(log_a3, log_a4)


def bgnbd_prob_alive(params: BgnbdParams, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(still alive at T | history) = 1 / (1 + [x > 0] * a / (b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x))."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, T))
    log_odds_dead = np.full_like(x, -np.inf)
    repeat = x > 0
    log_odds_dead[repeat] = (
        np.log(a)
        - np.log(b + x[repeat] - 1)
        + (r + x[repeat]) * (np.log(alpha + T[repeat]) - np.log(alpha + t_x[repeat]))
    )
    return np.exp(-np.logaddexp(0.0, log_odds_dead))


def bgnbd_expected_purchases(
    params: BgnbdParams, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """E[purchases in (T, T+t] | x, t_x, T] (FHL 2005, eq. 10):

    (a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) * 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))]
    / (1 + [x > 0] * a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x)).
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, T = (np.asarray(v, dtype=np.float64) for v in (frequency, T))
    ratio = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    expected = (a + b + x - 1) / (a - 1) * (1.0 - ratio * hyp) * bgnbd_prob_alive(params, frequency, recency, T)
    bad = ~np.isfinite(expected)
    if bad.any():
        log.warning("BG/NBD expectation not finite for %d customers (hyp2f1 range): set to 0", int(bad.sum()))
        expected = np.where(bad, 0.0, expected)
    return np.maximum(expected, 0.0)


def bgnbd_prob_purchase(
    params: BgnbdParams, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """P(at least one purchase in (T, T+t] | history) = P(alive) * (1 - ((alpha+T)/(alpha+T+t))^(r+x)):
    given alive, lambda ~ Gamma(r+x, alpha+T), and no purchase in t has probability E[exp(-lambda t)]."""
    r, alpha = params.r, params.alpha
    x, T_ = (np.asarray(v, dtype=np.float64) for v in (frequency, T))
    no_purchase = np.exp((r + x) * (np.log(alpha + T_) - np.log(alpha + T_ + t)))
    return bgnbd_prob_alive(params, frequency, recency, T) * (1.0 - no_purchase)


def fit_bgnbd(frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> BgnbdParams:
    """Maximum-likelihood (r, alpha, a, b), optimised over log-parameters with L-BFGS-B."""
    x, t_x, T = _check_rft(frequency, recency, T)
    # Start where E[lambda] = r / alpha matches the observed purchase rate.
    rate = max(float(x.sum() / T.sum()), 1e-6)
    start = np.log([1.0, 1.0 / rate, 1.0, 1.0])

    def objective(theta: np.ndarray) -> float:
        value = -bgnbd_log_likelihood(BgnbdParams(*np.exp(theta)), x, t_x, T).mean()
        return float(value) if np.isfinite(value) else 1e300

    theta = _minimize(objective, start, "BG/NBD")
    return BgnbdParams(*(float(v) for v in np.exp(theta)))


def gamma_gamma_log_likelihood(params: GammaGammaParams, frequency: np.ndarray, monetary: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood of the mean spend m over x transactions (Fader & Hardie's note, eq. 5):

    Gamma(px+q) / (Gamma(px) Gamma(q)) * gamma^q * m^(px-1) * x^(px) / (gamma + m x)^(px+q).
    """
    p, q, g = params.p, params.q, params.gamma
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary, dtype=np.float64)
    return (
        gammaln(p * x + q)
        - gammaln(p * x)
        - gammaln(q)
        + q * np.log(g)
        + (p * x - 1) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(g + m * x)
    )


def gamma_gamma_expected_value(params: GammaGammaParams, frequency: np.ndarray, monetary: np.ndarray) -> np.ndarray:
    """E[value per purchase | x, m] = (gamma + m x) p / (p x + q - 1): a weighted mix of the population mean
    gamma p / (q - 1) and the customer's own mean; x = 0 gives the population mean."""
    p, q, g = params.p, params.q, params.gamma
    x = np.asarray(frequency, dtype=np.float64)
    m = np.nan_to_num(np.asarray(monetary, dtype=np.float64))
    return (g + m * x) * p / (p * x + q - 1)


def fit_gamma_gamma(frequency: np.ndarray, monetary: np.ndarray) -> GammaGammaParams:
    """Maximum-likelihood (p, q, gamma) on customers with repeat purchases and positive mean value. q is kept
    above 1 so the expected value exists."""
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary, dtype=np.float64)
    usable = (x > 0) & np.isfinite(m) & (m > 0)
    if usable.sum() < 10:
        raise UserError(f"Gamma-Gamma needs customers with repeat purchases; only {int(usable.sum())} have any")
    x, m = x[usable], m[usable]
    start = np.log([1.0, 2.0, float(m.mean())])

    def objective(theta: np.ndarray) -> float:
        value = -gamma_gamma_log_likelihood(GammaGammaParams(*np.exp(theta)), x, m).mean()
        return float(value) if np.isfinite(value) else 1e300

    theta = _minimize(objective, start, "Gamma-Gamma", lower=[-_LOG_BOUND, np.log(1.0 + 1e-6), -_LOG_BOUND])
    return GammaGammaParams(*(float(v) for v in np.exp(theta)))


def _minimize(objective, start: np.ndarray, name: str, lower: list[float] | None = None) -> np.ndarray:
    from scipy.optimize import minimize

    lower = lower or [-_LOG_BOUND] * len(start)
    bounds = [(lo, _LOG_BOUND) for lo in lower]
    start = np.clip(start, [lo for lo, _ in bounds], _LOG_BOUND)
    result = minimize(objective, start, method="L-BFGS-B", bounds=bounds)
    if not result.success:
        # L-BFGS-B often stops on "ABNORMAL" line searches at a good optimum; polish with Nelder-Mead.
        polished = minimize(objective, result.x, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10})
        if polished.fun <= result.fun:
            result = polished
        log.info("%s fit: %s", name, result.message)
    return np.clip(result.x, [lo for lo, _ in bounds], _LOG_BOUND)


def _check_rft(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.nan_to_num(np.asarray(frequency, dtype=np.float64))
    t_x = np.nan_to_num(np.asarray(recency, dtype=np.float64))
    T = np.asarray(T, dtype=np.float64)
    if not np.isfinite(T).all():
        raise UserError(f"customer age T is missing for {int((~np.isfinite(T)).sum())} customers")
    if (x < 0).any() or (t_x < 0).any() or (T < 0).any():
        raise UserError("frequency, recency and T must be >= 0")
    # Rounding upstream can put the last purchase a hair after the cutoff.
    return x, np.minimum(t_x, T), T


@dataclass
class NaiveBaseline:
    """Expected LTV = past spend per day of tenure * horizon. No probability: it has no notion of churn."""

    horizon_days: int = 90
    monetary_total_column: str = "monetary_total"
    tenure_column: str = "tenure_days"
    min_tenure_days: float = 1.0  # a one-hour-old customer's spend is not a daily rate

    def fit(self, df: pd.DataFrame | None = None, y: object = None) -> NaiveBaseline:
        """Nothing to learn; here for the common interface."""
        return self

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        _require(df, [self.monetary_total_column, self.tenure_column], "naive baseline")
        spend = pd.to_numeric(df[self.monetary_total_column], errors="coerce").fillna(0.0).to_numpy(np.float64)
        tenure = pd.to_numeric(df[self.tenure_column], errors="coerce").to_numpy(np.float64)
        tenure = np.maximum(np.nan_to_num(tenure, nan=self.min_tenure_days), self.min_tenure_days)
        return pd.DataFrame({"expected_ltv": spend / tenure * self.horizon_days}, index=df.index)


@dataclass(frozen=True)
class OrderColumns:
    """Where the order history sits in the feature frame (defaults: the ``user_features`` mart)."""

    orders: str = "frequency"  # all orders before the cutoff, the first included
    monetary_total: str = "monetary_total"
    first_order_at: str = "first_order_at"
    last_order_at: str = "last_order_at"
    cutoff: str = "feature_timestamp"  # the snapshot instant; "as_of" (a date) is used when this is absent


def btyd_summary(df: pd.DataFrame, columns: OrderColumns = OrderColumns()) -> pd.DataFrame:
    """The BTYD summary per row: frequency = orders - 1, recency = last - first order, T = cutoff - first
    order (days), monetary_value = mean order value, and is_customer (has ordered).

    The mart keeps total spend, not the first order's value, so the mean is over all orders rather than the
    repeat ones (the Gamma-Gamma convention); close enough for a baseline.
    """
    cutoff_column = columns.cutoff if columns.cutoff in df.columns else "as_of"
    needed = [columns.orders, columns.monetary_total, columns.first_order_at, columns.last_order_at, cutoff_column]
    _require(df, needed, "BTYD baseline")
    orders = pd.to_numeric(df[columns.orders], errors="coerce").fillna(0).to_numpy(np.float64)
    total = pd.to_numeric(df[columns.monetary_total], errors="coerce").fillna(0).to_numpy(np.float64)
    first = pd.to_datetime(df[columns.first_order_at], utc=True)
    last = pd.to_datetime(df[columns.last_order_at], utc=True)
    cutoff = pd.to_datetime(df[cutoff_column], utc=True)
    day = pd.Timedelta(days=1)
    is_customer = (orders > 0) & first.notna().to_numpy()
    T = ((cutoff - first) / day).to_numpy(np.float64, na_value=0.0)
    recency = ((last - first) / day).to_numpy(np.float64, na_value=0.0)
    frequency = np.maximum(orders - 1, 0)
    if (is_customer & ((T < 0) | (recency < 0))).any():
        raise UserError("order timestamps after the cutoff or last before first order: check the feature frame")
    return pd.DataFrame(
        {
            "frequency": np.where(is_customer, frequency, 0.0),
            "recency": np.where(is_customer & (frequency > 0), np.minimum(recency, T), 0.0),
            "T": np.where(is_customer, T, 0.0),
            "monetary_value": np.divide(total, orders, out=np.zeros(len(df)), where=is_customer),
            "is_customer": is_customer,
        },
        index=df.index,
    )


@dataclass
class BtydBaseline:
    """BG/NBD + Gamma-Gamma on the customers' own order histories. ``predict`` gives expected_ltv =
    E[purchases in H] * E[value per purchase], prob_return = P(at least one purchase in H), prob_alive and
    expected_purchases. Users who never ordered are outside the model: they get 0."""

    horizon_days: int = 90
    columns: OrderColumns = field(default_factory=OrderColumns)
    bgnbd: BgnbdParams | None = None
    gamma_gamma: GammaGammaParams | None = None

    def fit(self, df: pd.DataFrame, y: object = None) -> BtydBaseline:
        """Fit both models on the customers in ``df`` (``y`` is unused: BTYD needs no labels)."""
        summary = btyd_summary(df, self.columns)
        return self.fit_summary(summary[summary["is_customer"]])

    def fit_summary(self, customers: pd.DataFrame) -> BtydBaseline:
        """Fit both models on a BTYD summary of customers (frequency, recency, T, monetary_value)."""
        if len(customers) < 10:
            raise UserError(f"BTYD needs customers with orders; only {len(customers)} in the frame")
        self.bgnbd = fit_bgnbd(customers["frequency"], customers["recency"], customers["T"])
        self.gamma_gamma = fit_gamma_gamma(customers["frequency"], customers["monetary_value"])
        log.info("BTYD fit on %d customers: %s, %s", len(customers), self.bgnbd, self.gamma_gamma)
        return self

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        if self.bgnbd is None or self.gamma_gamma is None:
            raise UserError("the BTYD baseline is not fitted: call fit() first")
        return self.predict_summary(btyd_summary(df, self.columns))

    def predict_summary(self, summary: pd.DataFrame) -> pd.DataFrame:
        """Predict from a BTYD summary (columns frequency, recency, T, monetary_value, optional is_customer)."""
        if self.bgnbd is None or self.gamma_gamma is None:
            raise UserError("the BTYD baseline is not fitted: call fit() first")
        _require(summary, ["frequency", "recency", "T", "monetary_value"], "BTYD baseline")
        x, t_x, T = _check_rft(summary["frequency"], summary["recency"], summary["T"])
        m = np.nan_to_num(summary["monetary_value"].to_numpy(np.float64))
        customer = summary["is_customer"].to_numpy(bool) if "is_customer" in summary else np.ones(len(x), bool)
        h = float(self.horizon_days)
        purchases = np.where(customer, bgnbd_expected_purchases(self.bgnbd, h, x, t_x, T), 0.0)
        value = gamma_gamma_expected_value(self.gamma_gamma, x, m)
        return pd.DataFrame(
            {
                "prob_return": np.where(customer, bgnbd_prob_purchase(self.bgnbd, h, x, t_x, T), 0.0),
                "expected_ltv": purchases * value,
                "expected_purchases": purchases,
                "prob_alive": np.where(customer, bgnbd_prob_alive(self.bgnbd, x, t_x, T), 0.0),
                "expected_order_value": value,
            },
            index=summary.index,
        )


def _require(df: pd.DataFrame, columns: list[str], who: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"{who} needs columns {', '.join(missing)}; the frame has {', '.join(map(str, df.columns))}")

"""The experiment statistics engine: pure functions over per-arm summary statistics (no I/O).

It works on sufficient statistics (count, sum, sum of squares, cross products) rather than raw rows, as
GrowthBook's ``gbstats`` does, so the warehouse can aggregate per arm in SQL and only a handful of numbers
reach Python. Every interval is two-sided.

- ``difference``: absolute and relative lift of a mean metric (Welch's t for the absolute difference, the
  delta method for the relative lift).
- ``ratio_difference``: metrics that are a ratio of two per-user sums (average order value = revenue /
  orders), delta method.
- ``cuped_difference``: variance reduction with a pre-exposure covariate (Deng et al. 2013).
- ``sequential_interval``: an always-valid confidence sequence (Howard et al. 2021's normal mixture), so
  looking at the result every day does not inflate false positives.
- ``srm_check``: sample-ratio mismatch (chi-square); a mismatch blocks any verdict.
- ``adjust_p_values``: multiple-metric correction (Holm by default).
- ``sample_size_per_arm`` / ``power``: the power calculator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

DEFAULT_ALPHA = 0.05
SRM_THRESHOLD = 0.001  # p-value below which the observed split is treated as broken (GrowthBook's default)


@dataclass(frozen=True)
class SampleStats:
    """One arm's per-user values of one metric, summarised."""

    n: int
    sum: float
    sum_squares: float

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> SampleStats:
        v = np.asarray(values, dtype=float)
        return cls(n=int(v.size), sum=float(v.sum()), sum_squares=float(np.square(v).sum()))

    @property
    def mean(self) -> float:
        return self.sum / self.n

    @property
    def variance(self) -> float:
        """Sample variance (n - 1 in the denominator)."""
        return max(self.sum_squares - self.sum**2 / self.n, 0.0) / (self.n - 1)


@dataclass(frozen=True)
class RatioStats:
    """One arm's per-user numerator and denominator (e.g. revenue and orders), summarised."""

    n: int
    num_sum: float
    num_sum_squares: float
    den_sum: float
    den_sum_squares: float
    num_den_sum: float

    @classmethod
    def of(cls, numerators: Sequence[float] | np.ndarray, denominators: Sequence[float] | np.ndarray) -> RatioStats:
        m, d = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
        return cls(
            n=int(m.size),
            num_sum=float(m.sum()),
            num_sum_squares=float(np.square(m).sum()),
            den_sum=float(d.sum()),
            den_sum_squares=float(np.square(d).sum()),
            num_den_sum=float((m * d).sum()),
        )

    @property
    def mean(self) -> float:
        return self.num_sum / self.den_sum

    @property
    def variance_of_mean(self) -> float:
        """Delta-method variance of sum(num) / sum(den) across users."""
        n = self.n
        mu_m, mu_d = self.num_sum / n, self.den_sum / n
        var_m = (self.num_sum_squares - n * mu_m**2) / (n - 1)
        var_d = (self.den_sum_squares - n * mu_d**2) / (n - 1)
        cov = (self.num_den_sum - n * mu_m * mu_d) / (n - 1)
        return (var_m / mu_d**2 - 2 * mu_m * cov / mu_d**3 + mu_m**2 * var_d / mu_d**4) / n


@dataclass(frozen=True)
class CovariateStats:
    """One arm's metric (y) with its pre-exposure covariate (x), summarised for CUPED."""

    n: int
    y_sum: float
    y_sum_squares: float
    x_sum: float
    x_sum_squares: float
    xy_sum: float

    @classmethod
    def of(cls, y: Sequence[float] | np.ndarray, x: Sequence[float] | np.ndarray) -> CovariateStats:
        yv, xv = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
        return cls(
            n=int(yv.size),
            y_sum=float(yv.sum()),
            y_sum_squares=float(np.square(yv).sum()),
            x_sum=float(xv.sum()),
            x_sum_squares=float(np.square(xv).sum()),
            xy_sum=float((xv * yv).sum()),
        )


@dataclass(frozen=True)
class Effect:
    """Treatment minus control, with its two-sided interval at level 1 - alpha."""

    control_mean: float
    treatment_mean: float
    absolute: float
    absolute_ci: tuple[float, float]
    relative: float
    relative_ci: tuple[float, float]
    standard_error: float
    p_value: float
    alpha: float

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha


def _check_arms(*arms: object) -> None:
    for arm in arms:
        if arm.n < 2:  # type: ignore[attr-defined]
            raise ValueError(f"each arm needs at least 2 users (got {arm.n})")  # type: ignore[attr-defined]


def _relative(mean_c: float, mean_t: float, var_mean_c: float, var_mean_t: float, cov_ct: float = 0.0) -> float:
    """Delta-method variance of mean_t / mean_c - 1 (arms independent unless cov_ct is given)."""
    return var_mean_t / mean_c**2 + mean_t**2 * var_mean_c / mean_c**4 - 2 * mean_t * cov_ct / mean_c**3


def _effect(
    mean_c: float, mean_t: float, var_mean_c: float, var_mean_t: float, alpha: float, df: float | None
) -> Effect:
    diff = mean_t - mean_c
    se = math.sqrt(max(var_mean_c + var_mean_t, 0.0))  # a constant metric's variance may round below 0
    if df is not None:
        q = float(stats.t.ppf(1 - alpha / 2, df))
        p = float(2 * stats.t.sf(abs(diff) / se, df)) if se > 0 else (0.0 if diff != 0 else 1.0)
    else:
        q = float(stats.norm.ppf(1 - alpha / 2))
        p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else (0.0 if diff != 0 else 1.0)
    if mean_c == 0:
        rel, rel_ci = float("nan"), (float("nan"), float("nan"))
    else:
        rel = mean_t / mean_c - 1
        rel_se = math.sqrt(max(_relative(mean_c, mean_t, var_mean_c, var_mean_t), 0.0))
        rel_ci = (rel - q * rel_se, rel + q * rel_se)
    return Effect(
        control_mean=mean_c,
        treatment_mean=mean_t,
        absolute=diff,
        absolute_ci=(diff - q * se, diff + q * se),
        relative=rel,
        relative_ci=rel_ci,
        standard_error=se,
        p_value=p,
        alpha=alpha,
    )


def difference(control: SampleStats, treatment: SampleStats, alpha: float = DEFAULT_ALPHA) -> Effect:
    """Lift of a mean metric: Welch's t-test for the absolute difference (matches
    ``scipy.stats.ttest_ind(equal_var=False)``), delta method for the relative lift."""
    _check_arms(control, treatment)
    vc, vt = control.variance / control.n, treatment.variance / treatment.n
    denom = (vc**2 / (control.n - 1) + vt**2 / (treatment.n - 1)) if (vc + vt) > 0 else 0.0
    df = (vc + vt) ** 2 / denom if denom > 0 else None
    return _effect(control.mean, treatment.mean, vc, vt, alpha, df)


def ratio_difference(control: RatioStats, treatment: RatioStats, alpha: float = DEFAULT_ALPHA) -> Effect:
    """Lift of a ratio metric (sum of numerators / sum of denominators per arm), delta method; the
    denominator's randomness is accounted for, which a naive per-order t-test would ignore."""
    _check_arms(control, treatment)
    if control.den_sum <= 0 or treatment.den_sum <= 0:
        raise ValueError("ratio metric needs a positive denominator in each arm")
    return _effect(control.mean, treatment.mean, control.variance_of_mean, treatment.variance_of_mean, alpha, None)


def cuped_theta(control: CovariateStats, treatment: CovariateStats) -> float:
    """Pooled regression slope of y on x over both arms (one theta, so the adjustment is unbiased)."""
    n = control.n + treatment.n
    x_sum, y_sum = control.x_sum + treatment.x_sum, control.y_sum + treatment.y_sum
    sxx = control.x_sum_squares + treatment.x_sum_squares - x_sum**2 / n
    sxy = control.xy_sum + treatment.xy_sum - x_sum * y_sum / n
    return sxy / sxx if sxx > 0 else 0.0


def _adjusted(arm: CovariateStats, theta: float, x_mean_all: float) -> tuple[float, float]:
    """(CUPED-adjusted mean, variance of that mean) of one arm."""
    n = arm.n
    y_mean, x_mean = arm.y_sum / n, arm.x_sum / n
    var_y = (arm.y_sum_squares - n * y_mean**2) / (n - 1)
    var_x = (arm.x_sum_squares - n * x_mean**2) / (n - 1)
    cov = (arm.xy_sum - n * x_mean * y_mean) / (n - 1)
    var_adj = max(var_y + theta**2 * var_x - 2 * theta * cov, 0.0)
    return y_mean - theta * (x_mean - x_mean_all), var_adj / n


def cuped_difference(control: CovariateStats, treatment: CovariateStats, alpha: float = DEFAULT_ALPHA) -> Effect:
    """Lift with CUPED variance reduction: y - theta (x - mean x). The interval narrows by about
    sqrt(1 - corr(x, y)^2) against ``difference`` on y alone."""
    _check_arms(control, treatment)
    theta = cuped_theta(control, treatment)
    x_mean_all = (control.x_sum + treatment.x_sum) / (control.n + treatment.n)
    mc, vc = _adjusted(control, theta, x_mean_all)
    mt, vt = _adjusted(treatment, theta, x_mean_all)
    return _effect(mc, mt, vc, vt, alpha, None)


def mixture_rho2(alpha: float, tuning_n: int) -> float:
    """The normal mixture's variance rho^2 that makes the confidence sequence tightest at ``tuning_n``
    observations (Howard et al. 2021)."""
    log_term = -2 * math.log(alpha)
    return (log_term + math.log(log_term + 1)) / tuning_n


def confidence_sequence_margin(n: int, alpha: float, rho2: float) -> float:
    """Half-width, in standard deviations of one observation, of the two-sided normal-mixture confidence
    sequence for a mean after n observations (Howard et al. 2021, eq. 14)."""
    return math.sqrt(2 * (n * rho2 + 1) / (n**2 * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))


def sequential_interval(effect: Effect, n_total: int, tuning_n: int = 5000) -> Effect:
    """The effect with always-valid intervals: valid whenever, and however often, it is looked at.
    ``n_total`` is the users in both arms so far. The p-value is the mixture SPRT's always-valid p-value
    (the inverse of the mixture likelihood ratio, capped at 1) for the same mixture, so it is below alpha
    exactly when the interval excludes zero."""
    if n_total < 2:
        raise ValueError("sequential interval needs at least 2 users")
    rho2 = mixture_rho2(effect.alpha, tuning_n)
    sigma = effect.standard_error * math.sqrt(n_total)  # per-observation scale of the difference
    half = sigma * confidence_sequence_margin(n_total, effect.alpha, rho2)
    ratio = half / effect.standard_error if effect.standard_error > 0 else 1.0
    rel_se = (effect.relative_ci[1] - effect.relative_ci[0]) / 2 / float(stats.norm.ppf(1 - effect.alpha / 2))
    rel_half = rel_se * ratio
    if sigma > 0:
        z2 = (effect.absolute / sigma) ** 2
        growth = n_total * rho2 + 1
        p_value = min(1.0, math.sqrt(growth) * math.exp(-z2 * n_total**2 * rho2 / (2 * growth)))
    else:
        p_value = 0.0 if effect.absolute != 0 else 1.0
    return replace(
        effect,
        absolute_ci=(effect.absolute - half, effect.absolute + half),
        relative_ci=(effect.relative - rel_half, effect.relative + rel_half),
        p_value=p_value,
    )


@dataclass(frozen=True)
class SrmResult:
    p_value: float
    observed: tuple[int, ...]
    expected_share: tuple[float, ...]
    threshold: float

    @property
    def mismatch(self) -> bool:
        """True blocks the verdict: the split itself is broken (bucketing, logging or bot filtering)."""
        return self.p_value < self.threshold


def srm_check(observed: Sequence[int], weights: Sequence[float], threshold: float = SRM_THRESHOLD) -> SrmResult:
    """Chi-square goodness of fit of the users per arm against the configured weights."""
    obs = np.asarray(observed, dtype=float)
    w = np.asarray(weights, dtype=float)
    if obs.size != w.size or obs.size < 2:
        raise ValueError("srm check needs one count and one weight per arm, at least two arms")
    if (w <= 0).any():
        raise ValueError("arm weights must be positive")
    share = w / w.sum()
    if obs.sum() == 0:
        return SrmResult(1.0, tuple(int(o) for o in obs), tuple(share), threshold)
    p = float(stats.chisquare(obs, f_exp=share * obs.sum()).pvalue)
    return SrmResult(p, tuple(int(o) for o in obs), tuple(float(s) for s in share), threshold)


def adjust_p_values(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Family-wise (Holm, Bonferroni) or false-discovery-rate (``fdr_bh``) correction across metrics."""
    from statsmodels.stats.multitest import multipletests

    if len(p_values) == 0:
        return []
    return [float(p) for p in multipletests(list(p_values), method=method)[1]]


def guardrail_status(effect: Effect, higher_is_better: bool = True) -> str:
    """'fail' when the metric is significantly worse, 'warn' when worse but not significantly, else 'ok'."""
    worse = effect.absolute < 0 if higher_is_better else effect.absolute > 0
    if not worse:
        return "ok"
    return "fail" if effect.significant else "warn"


def sample_size_per_arm(
    sd: float, minimum_detectable_effect: float, alpha: float = DEFAULT_ALPHA, power: float = 0.8
) -> int:
    """Users per arm (two equal arms) to detect an absolute difference with the given power, two-sided."""
    if sd <= 0 or minimum_detectable_effect == 0:
        raise ValueError("sample size needs a positive standard deviation and a non-zero effect")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return math.ceil(2 * (z * sd / minimum_detectable_effect) ** 2)


def power(sd: float, effect: float, n_per_arm: int, alpha: float = DEFAULT_ALPHA) -> float:
    """Probability of a significant two-sided result for a true absolute difference ``effect``."""
    se = sd * math.sqrt(2 / n_per_arm)
    q = stats.norm.ppf(1 - alpha / 2)
    shift = abs(effect) / se
    return float(stats.norm.sf(q - shift) + stats.norm.cdf(-q - shift))

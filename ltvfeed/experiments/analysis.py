"""An experiment's read-out from its per-user metrics table: every metric of every treatment arm against
control, the SRM gate, multiple-metric correction, guardrails and the long-term LTV surrogate.

Input: one row per (arm, user) with the columns of :data:`USER_COLUMNS` (the dbt model
``experiment_user_metrics`` produces exactly these). The statistics come from :mod:`ltvfeed.experiments.stats`;
this module only decides which test fits which metric:
- ratio metrics (CTR = clicks / exposures, AOV = revenue / orders) use the delta method;
- per-user means use CUPED with the user's pre-exposure value of the same quantity when it is available;
- with ``sequential=True`` (the default for reports read daily) intervals are always-valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ltvfeed.experiments import stats

USER_COLUMNS = (
    "arm",
    "user_id",
    "exposures",
    "clicks",
    "converted",
    "orders",
    "revenue",
    "pre_revenue",
    "long_window_revenue",
    "predicted_ltv_first",
    "predicted_ltv_last",
)
RATIO_METRICS = {"ctr": ("clicks", "exposures"), "average_order_value": ("revenue", "orders")}
MEAN_METRICS = {
    "conversion_rate": ("converted", None),
    "revenue_per_user": ("revenue", "pre_revenue"),
    "orders_per_user": ("orders", None),
    "long_window_revenue": ("long_window_revenue", "pre_revenue"),
}


@dataclass(frozen=True)
class MetricResult:
    metric: str
    role: str  # primary | secondary | guardrail
    arm: str
    effect: stats.Effect
    adjusted_p: float
    guardrail: str | None = None


@dataclass
class Analysis:
    control: str
    users: dict[str, int]
    srm: stats.SrmResult
    results: list[MetricResult] = field(default_factory=list)
    surrogate: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.srm.mismatch:
            return f"no verdict: sample ratio mismatch (p = {self.srm.p_value:.2g})"
        if any(r.guardrail == "fail" for r in self.results):
            return "guardrail failed: " + ", ".join(
                f"{r.arm}/{r.metric}" for r in self.results if r.guardrail == "fail"
            )
        primary = [r for r in self.results if r.role == "primary"]
        wins = [r for r in primary if r.adjusted_p < r.effect.alpha and r.effect.absolute > 0]
        losses = [r for r in primary if r.adjusted_p < r.effect.alpha and r.effect.absolute < 0]
        if wins:
            return "treatment wins on the primary metric: " + ", ".join(r.arm for r in wins)
        if losses:
            return "treatment loses on the primary metric: " + ", ".join(r.arm for r in losses)
        return "no significant difference on the primary metric yet"


def _effect(metric: str, c: pd.DataFrame, t: pd.DataFrame, alpha: float, sequential: bool) -> stats.Effect:
    if metric in RATIO_METRICS:
        num, den = RATIO_METRICS[metric]
        effect = stats.ratio_difference(stats.RatioStats.of(c[num], c[den]), stats.RatioStats.of(t[num], t[den]), alpha)
    else:
        col, covariate = MEAN_METRICS[metric]
        if covariate is not None and c[covariate].std() > 0:
            effect = stats.cuped_difference(
                stats.CovariateStats.of(c[col], c[covariate]), stats.CovariateStats.of(t[col], t[covariate]), alpha
            )
        else:
            effect = stats.difference(stats.SampleStats.of(c[col]), stats.SampleStats.of(t[col]), alpha)
    if sequential:
        effect = stats.sequential_interval(effect, len(c) + len(t))
    return effect


def analyse(
    users: pd.DataFrame,
    *,
    control: str,
    weights: dict[str, float],
    primary: str,
    secondary: list[str] | tuple[str, ...] = (),
    guardrails: list[str] | tuple[str, ...] = (),
    alpha: float = stats.DEFAULT_ALPHA,
    sequential: bool = True,
) -> Analysis:
    """The read-out of one experiment. ``weights`` are the configured arm weights (for the SRM check)."""
    missing = [c for c in USER_COLUMNS if c not in users.columns]
    if missing:
        raise ValueError(f"experiment metrics lack columns: {', '.join(missing)}")
    arms = list(weights)
    counts = users.groupby("arm")["user_id"].nunique().reindex(arms, fill_value=0)
    srm = stats.srm_check(counts.tolist(), [weights[a] for a in arms])
    analysis = Analysis(control=control, users={a: int(n) for a, n in counts.items()}, srm=srm)
    ctrl = users[users["arm"] == control]
    roles = [(primary, "primary"), *((m, "secondary") for m in secondary), *((m, "guardrail") for m in guardrails)]
    raw: list[tuple[str, str, str, stats.Effect]] = []
    for arm in arms:
        if arm == control:
            continue
        treat = users[users["arm"] == arm]
        if len(ctrl) < 2 or len(treat) < 2:
            continue
        for metric, role in roles:
            raw.append((metric, role, arm, _effect(metric, ctrl, treat, alpha, sequential)))
    # Holm across the primary and secondary metrics (guardrails are one-sided safety checks, not discoveries)
    tested = [i for i, r in enumerate(raw) if r[1] != "guardrail"]
    adjusted = dict(zip(tested, stats.adjust_p_values([raw[i][3].p_value for i in tested]), strict=True))
    for i, (metric, role, arm, effect) in enumerate(raw):
        guard = stats.guardrail_status(effect) if role == "guardrail" else None
        analysis.results.append(MetricResult(metric, role, arm, effect, adjusted.get(i, effect.p_value), guard))
    analysis.surrogate = ltv_surrogate(users, control)
    return analysis


def ltv_surrogate(users: pd.DataFrame, control: str) -> dict[str, dict[str, float]]:
    """Per treatment arm: the relative lift in predicted LTV (the model's latest prediction: the surrogate for
    long-term value while the window is open), the realised long-window revenue lift so far, and how much of
    the predicted lift the realised one confirms (realised / predicted)."""
    out: dict[str, dict[str, float]] = {}
    c = users[users["arm"] == control]
    if c.empty or not c["predicted_ltv_last"].mean() > 0:  # NaN: no LTV prediction covers these users
        return out
    for arm in sorted(set(users["arm"]) - {control}):
        t = users[users["arm"] == arm]
        predicted = t["predicted_ltv_last"].mean() / c["predicted_ltv_last"].mean() - 1
        realised_c = c["long_window_revenue"].mean()
        realised = t["long_window_revenue"].mean() / realised_c - 1 if realised_c > 0 else float("nan")
        confirmed = realised / predicted if predicted != 0 and np.isfinite(realised) else float("nan")
        out[arm] = {"predicted_lift": float(predicted), "realised_lift": float(realised), "confirmed": float(confirmed)}
    return out

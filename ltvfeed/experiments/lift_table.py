"""An experiment's read-out as a plain-text table: every metric of every treatment arm with its lift and
interval, for terminals and docs (the HTML report has the same figures with plots)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ltvfeed.experiments.analysis import Analysis


@dataclass(frozen=True)
class LiftRow:
    arm: str
    metric: str
    role: str
    control: float
    treatment: float
    lift: float  # relative
    low: float
    high: float
    p_value: float  # Holm-adjusted (guardrails: unadjusted)

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.lift, self.low, self.high))


def lift_rows(analysis: Analysis) -> list[LiftRow]:
    return [
        LiftRow(
            r.arm,
            r.metric,
            r.role,
            r.effect.control_mean,
            r.effect.treatment_mean,
            r.effect.relative,
            r.effect.relative_ci[0],
            r.effect.relative_ci[1],
            r.adjusted_p,
        )
        for r in analysis.results
    ]


def _pct(x: float) -> str:
    return f"{x:+.1%}" if math.isfinite(x) else "n/a"


def format_lift_table(analysis: Analysis) -> str:
    """A Markdown table (readable as is in a terminal): arm, metric, role, means, lift [interval], p."""
    lines = [
        f"| arm | metric | role | {analysis.control} | treatment | lift | interval | p (adjusted) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in lift_rows(analysis):
        lines.append(
            f"| {r.arm} | {r.metric} | {r.role} | {r.control:.4g} | {r.treatment:.4g} | {_pct(r.lift)} | "
            f"[{_pct(r.low)}, {_pct(r.high)}] | {r.p_value:.3g} |"
        )
    users = ", ".join(f"{arm} {n:,}" for arm, n in analysis.users.items())
    lines.append(f"\nusers: {users}; SRM p = {analysis.srm.p_value:.3g}; verdict: {analysis.verdict}")
    return "\n".join(lines)

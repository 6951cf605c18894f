"""The experiment report: one self-contained HTML page (charts embedded as PNG, nothing loaded from the
internet) with the verdict, SRM status, sample sizes, a forest plot of every metric, the primary metric's
cumulative lift over time with its interval band, and the LTV surrogate against what has been realised."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from datetime import date

import pandas as pd

from ltvfeed.experiments.analysis import Analysis


def cumulative_lifts(users: pd.DataFrame, analyse_day: Callable[[pd.DataFrame], Analysis], metric: str) -> pd.DataFrame:
    """The primary metric's lift (and interval) for each arm as it stood at the end of each day, using the
    users first exposed by then (``first_exposed_on`` column)."""
    rows = []
    for day in sorted(users["first_exposed_on"].unique()):
        seen = users[users["first_exposed_on"] <= day]
        try:
            analysis = analyse_day(seen)
        except ValueError:
            continue
        for r in analysis.results:
            if r.metric == metric:
                lo, hi = r.effect.relative_ci
                rows.append({"day": day, "arm": r.arm, "lift": r.effect.relative, "low": lo, "high": hi})
    return pd.DataFrame(rows, columns=["day", "arm", "lift", "low", "high"])


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _figure(height: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, height))
    return fig, fig.add_subplot()


def forest_plot(analysis: Analysis) -> str:
    fig, ax = _figure(0.45 * max(len(analysis.results), 2) + 1)
    labels = []
    for i, r in enumerate(analysis.results):
        lo, hi = r.effect.relative_ci
        colour = "tab:red" if r.guardrail == "fail" else ("tab:green" if r.adjusted_p < r.effect.alpha else "tab:grey")
        ax.plot([lo * 100, hi * 100], [i, i], color=colour, linewidth=2)
        ax.plot([r.effect.relative * 100], [i], "o", color=colour)
        labels.append(f"{r.arm}: {r.metric} ({r.role})")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("relative lift vs control, % (interval: always-valid when sequential)")
    ax.set_title("Every metric")
    return _png(fig)


def cumulative_plot(lifts: pd.DataFrame, metric: str) -> str:
    fig, ax = _figure()
    for arm, part in lifts.groupby("arm"):
        ax.plot(part["day"], part["lift"] * 100, label=str(arm))
        ax.fill_between(part["day"], part["low"] * 100, part["high"] * 100, alpha=0.2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel(f"{metric} lift, %")
    ax.set_title("Cumulative lift over time, with interval band")
    ax.legend(loc="upper right")
    fig.autofmt_xdate()
    return _png(fig)


def render_html(name: str, analysis: Analysis, lifts: pd.DataFrame | None, *, as_of: date | None = None) -> str:
    esc = html.escape
    srm = analysis.srm
    rows = "".join(
        f"<tr><td>{esc(r.arm)}</td><td>{esc(r.metric)}</td><td>{r.role}</td><td>{r.effect.control_mean:.4g}</td>"
        f"<td>{r.effect.treatment_mean:.4g}</td><td>{r.effect.relative:+.2%}</td>"
        f"<td>[{r.effect.relative_ci[0]:+.2%}, {r.effect.relative_ci[1]:+.2%}]</td><td>{r.effect.p_value:.3g}</td>"
        f"<td>{r.adjusted_p:.3g}</td><td>{r.guardrail or ''}</td></tr>"
        for r in analysis.results
    )
    sizes = "".join(f"<tr><td>{esc(a)}</td><td>{n:,}</td></tr>" for a, n in analysis.users.items())
    surrogate = "".join(
        f"<tr><td>{esc(a)}</td><td>{v['predicted_lift']:+.2%}</td><td>{v['realised_lift']:+.2%}</td>"
        f"<td>{v['confirmed']:.0%}</td></tr>"
        for a, v in analysis.surrogate.items()
    )
    if not surrogate:
        surrogate = '<tr><td colspan="4">no LTV prediction covers these users (no LTV model scored them)</td></tr>'
    primary = next((r.metric for r in analysis.results if r.role == "primary"), "")
    charts = f'<img alt="forest plot" src="data:image/png;base64,{forest_plot(analysis)}">'
    if lifts is not None and not lifts.empty:
        charts += f'<img alt="cumulative lift" src="data:image/png;base64,{cumulative_plot(lifts, primary)}">'
    srm_text = "mismatch: verdict blocked" if srm.mismatch else "ok"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Experiment {esc(name)}</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}}img{{display:block;margin:1rem 0}}</style>
</head><body>
<h1>Experiment {esc(name)}</h1>
<p id="verdict"><strong>{esc(analysis.verdict)}</strong>{f" (as of {as_of})" if as_of else ""}</p>
<h2>Sample ratio</h2><p id="srm">SRM check: {srm_text} (chi-square p = {srm.p_value:.3g}, threshold {srm.threshold})</p>
<table><tr><th>arm</th><th>users</th></tr>{sizes}</table>
<h2>Metrics</h2>
<table id="metrics"><tr><th>arm</th><th>metric</th><th>role</th><th>control</th><th>treatment</th><th>lift</th>
<th>interval</th><th>p</th><th>p (Holm)</th><th>guardrail</th></tr>{rows}</table>
{charts}
<h2>Long-term value</h2>
<p>Predicted LTV (the model's latest prediction) is the surrogate while the long window is open; the realised
long-window revenue confirms it as the window closes.</p>
<table id="ltv"><tr><th>arm</th><th>predicted LTV lift</th><th>realised lift so far</th><th>confirmed</th></tr>
{surrogate}</table>
</body></html>
"""

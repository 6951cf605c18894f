"""Experiment read-out (analysis and HTML report) on planted effects, and which feed an arm serves. The registry
on the real servers is in tests/integration/test_experiments.py."""

from __future__ import annotations

import re
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ltvfeed.experiments.analysis import analyse
from ltvfeed.experiments.report import cumulative_lifts, render_html


def _users(
    n_control: int, n_treatment: int, *, conversion_lift: float = 0.0, revenue_factor: float = 1.0, seed: int = 0
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for arm, n, lift, factor in (
        ("control", n_control, 0.0, 1.0),
        ("treatment", n_treatment, conversion_lift, revenue_factor),
    ):
        pre = rng.gamma(2.0, 20.0, n)
        exposures = rng.integers(1, 20, n)
        clicks = rng.binomial(exposures, 0.1)
        converted = rng.random(n) < 0.2 + lift
        orders = np.where(converted, rng.integers(1, 4, n), 0)
        revenue = np.where(converted, factor * (0.6 * pre + rng.gamma(2.0, 15.0, n)), 0.0)
        frames.append(
            pd.DataFrame(
                {
                    "arm": arm,
                    "user_id": [f"{arm[0]}{i}" for i in range(n)],
                    "exposures": exposures,
                    "clicks": clicks,
                    "converted": converted.astype(float),
                    "orders": orders,
                    "revenue": revenue,
                    "pre_revenue": pre,
                    "long_window_revenue": revenue * 3,
                    "predicted_ltv_first": pre * 2,
                    "predicted_ltv_last": revenue * 3.3,
                    "first_exposed_on": [date(2026, 11, 1) + timedelta(days=int(d)) for d in rng.integers(0, 14, n)],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _analyse(users: pd.DataFrame, **kw):
    return analyse(
        users,
        control="control",
        weights={"control": 1, "treatment": 1},
        primary="conversion_rate",
        secondary=["ctr", "average_order_value"],
        guardrails=["revenue_per_user"],
        **kw,
    )


def test_planted_win_is_found_and_aa_is_not() -> None:
    win = _analyse(_users(6000, 6000, conversion_lift=0.03))
    assert win.verdict.startswith("treatment wins")
    primary = next(r for r in win.results if r.metric == "conversion_rate")
    assert primary.effect.relative_ci[0] < 0.15 < primary.effect.relative_ci[1]  # true lift 0.03 / 0.2
    aa = _analyse(_users(6000, 6000, seed=1))
    assert aa.verdict == "no significant difference on the primary metric yet"


def test_srm_blocks_the_verdict() -> None:
    analysis = _analyse(_users(5200, 4800, conversion_lift=0.05))
    assert analysis.srm.mismatch
    assert analysis.verdict.startswith("no verdict: sample ratio mismatch")


def test_guardrail_fails_when_revenue_drops() -> None:
    analysis = _analyse(_users(6000, 6000, revenue_factor=0.7, seed=2))
    guard = next(r for r in analysis.results if r.metric == "revenue_per_user")
    assert guard.guardrail == "fail"
    assert analysis.verdict.startswith("guardrail failed")


def test_cuped_narrows_revenue_interval_and_sequential_widens_it() -> None:
    users = _users(5000, 5000, seed=3)
    seq = {r.metric: r.effect for r in _analyse(users).results}
    fixed = {r.metric: r.effect for r in _analyse(users, sequential=False).results}
    width = lambda e: e.absolute_ci[1] - e.absolute_ci[0]  # noqa: E731
    assert width(seq["revenue_per_user"]) > width(fixed["revenue_per_user"])
    from ltvfeed.experiments import stats

    c, t = users[users.arm == "control"], users[users.arm == "treatment"]
    plain = stats.difference(stats.SampleStats.of(c.revenue), stats.SampleStats.of(t.revenue))
    corr = np.corrcoef(users.revenue, users.pre_revenue)[0, 1]
    assert width(fixed["revenue_per_user"]) / width(plain) == pytest.approx(np.sqrt(1 - corr**2), rel=0.02)
    assert width(fixed["revenue_per_user"]) < width(plain)


def test_holm_adjusted_p_values_are_not_smaller() -> None:
    for r in _analyse(_users(3000, 3000, seed=4)).results:
        assert r.adjusted_p >= r.effect.p_value - 1e-12


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="lack columns: clicks"):
        _analyse(_users(100, 100).drop(columns=["clicks"]))


def test_ltv_surrogate_and_confirmation() -> None:
    users = _users(4000, 4000, revenue_factor=1.2, seed=5)
    s = _analyse(users).surrogate["treatment"]
    assert s["predicted_lift"] == pytest.approx(s["realised_lift"], rel=0.05)  # last prediction ∝ revenue here
    assert s["confirmed"] == pytest.approx(1.0, abs=0.05)


def test_report_is_self_contained_html_with_every_part() -> None:
    users = _users(3000, 3000, conversion_lift=0.04, seed=6)
    analysis = _analyse(users)
    lifts = cumulative_lifts(users, _analyse, "conversion_rate")
    assert len(lifts) == 14 and (lifts["low"] <= lifts["lift"]).all()
    page = render_html("feed-v1", analysis, lifts, as_of=date(2026, 11, 15))
    assert 'id="verdict"' in page and 'id="srm"' in page and 'id="ltv"' in page
    assert page.count("data:image/png;base64,") == 2
    assert not re.search(r"(src|href)=\"https?://", page)
    assert "<script" not in page


@pytest.mark.browser
def test_report_renders_in_a_browser_with_its_plots(tmp_path, headless_browser) -> None:
    """The page as a person opens it (a file, offline): both plots decode and have a size, the verdict, SRM,
    metrics and LTV sections are shown, and nothing was fetched."""
    from selenium.webdriver.common.by import By

    users = _users(3000, 3000, conversion_lift=0.04, seed=6)
    analysis = _analyse(users)
    path = tmp_path / "report.html"
    path.write_text(render_html("feed-v1", analysis, cumulative_lifts(users, _analyse, "conversion_rate")))
    browser = headless_browser()
    browser.get(path.as_uri())
    sizes = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert sorted(s[0] for s in sizes) == ["cumulative lift", "forest plot"]
    assert all(complete and w > 200 and h > 100 for _, complete, w, h in sizes), sizes
    for section in ("verdict", "srm", "metrics", "ltv"):
        assert browser.find_element(By.ID, section).is_displayed(), section
    rows = browser.find_elements(By.CSS_SELECTOR, "#metrics tr")
    assert len(rows) == 1 + len(analysis.results)
    assert analysis.verdict in browser.find_element(By.ID, "verdict").text
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(url.startswith("data:") for url in fetched), fetched


def test_an_arm_serves_classic_personalised_or_a_named_variant() -> None:
    from ltvfeed.experiments.registry import FeedArm

    assert FeedArm(name="t", weight=1, feed="variant:concept_2").feed == "variant:concept_2"
    for feed, fragment in [("weird", "feed must be one of"), ("variant:", "variant name"), ("variant:A/B", "variant")]:
        with pytest.raises(ValueError, match=fragment):
            FeedArm(name="t", weight=1, feed=feed)


def test_without_ltv_predictions_the_report_says_so_instead_of_nan() -> None:
    users = _users(800, 800, seed=8)
    users[["predicted_ltv_first", "predicted_ltv_last"]] = np.nan
    analysis = _analyse(users)
    assert analysis.surrogate == {}
    page = render_html("feed-v1", analysis, None)
    assert "no LTV prediction covers these users" in page and "nan%" not in page

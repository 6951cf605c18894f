"""Calibration of the experiment statistics engine by simulation: A/A false-positive rates (fixed horizon and
daily peeking, fixed-horizon test vs the always-valid confidence sequence), SRM detection, power against the
calculator's promise, and CUPED's narrowing against sqrt(1 - rho^2).

    .venv/bin/python bench/bench_experiment_stats.py                 # 2,000 experiments per check
    .venv/bin/python bench/bench_experiment_stats.py --experiments 1000 --seed 3

Every figure is printed beside its target; exit status 1 when one misses it.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from ltvfeed.experiments import stats


def aa_fixed(rng: np.random.Generator, experiments: int, n: int) -> float:
    hits = 0
    for _ in range(experiments):
        c, t = rng.lognormal(2, 1, n), rng.lognormal(2, 1, n)
        hits += stats.difference(stats.SampleStats.of(c), stats.SampleStats.of(t)).significant
    return hits / experiments


def aa_peeking(rng: np.random.Generator, experiments: int, days: int, per_day: int) -> tuple[float, float]:
    naive_hits = seq_hits = 0
    for _ in range(experiments):
        draws = rng.lognormal(2, 1, (2, days, per_day))
        sums, squares = draws.sum(axis=2).cumsum(axis=1), np.square(draws).sum(axis=2).cumsum(axis=1)
        naive = seq = False
        for d in range(days):
            k = (d + 1) * per_day
            effect = stats.difference(
                stats.SampleStats(k, float(sums[0, d]), float(squares[0, d])),
                stats.SampleStats(k, float(sums[1, d]), float(squares[1, d])),
            )
            naive |= effect.significant
            seq |= stats.sequential_interval(effect, 2 * k, tuning_n=2 * days * per_day).significant
        naive_hits += naive
        seq_hits += seq
    return naive_hits / experiments, seq_hits / experiments


def srm_detection(rng: np.random.Generator, experiments: int, n: int) -> tuple[float, float]:
    planted = np.mean(
        [stats.srm_check(list(rng.multinomial(n, [0.52, 0.48])), [1, 1]).mismatch for _ in range(experiments)]
    )
    fair = np.mean([stats.srm_check(list(rng.multinomial(n, [0.5, 0.5])), [1, 1]).mismatch for _ in range(experiments)])
    return float(planted), float(fair)


def srm_power(n: int, share: float) -> float:
    """P(the SRM check flags a split drawn with ``share`` / 1 - share of ``n`` users): a noncentral chi-square
    with one degree of freedom against the check's critical value."""
    from scipy.stats import chi2, ncx2

    noncentrality = n * ((share - 0.5) ** 2 / 0.5 + (0.5 - share) ** 2 / 0.5)
    return float(ncx2.sf(chi2.isf(stats.SRM_THRESHOLD, 1), 1, noncentrality))


def power_check(rng: np.random.Generator, experiments: int) -> tuple[int, float, float]:
    sd, mde = 30.0, 2.0
    n = stats.sample_size_per_arm(sd, mde, power=0.8)
    hits = 0
    for _ in range(experiments):
        c, t = rng.normal(50, sd, n), rng.normal(50 + mde, sd, n)
        hits += stats.difference(stats.SampleStats.of(c), stats.SampleStats.of(t)).significant
    return n, stats.power(sd, mde, n), hits / experiments


def cuped_check(rng: np.random.Generator, rho: float, n: int) -> tuple[float, float]:
    x = rng.normal(0, 1, 2 * n)
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(0, 1, 2 * n)
    plain = stats.difference(stats.SampleStats.of(y[:n]), stats.SampleStats.of(y[n:]))
    cuped = stats.cuped_difference(stats.CovariateStats.of(y[:n], x[:n]), stats.CovariateStats.of(y[n:], x[n:]))
    return cuped.standard_error / plain.standard_error, math.sqrt(1 - rho**2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    e = args.experiments
    checks: list[tuple[str, str, bool]] = []

    fpr = aa_fixed(rng, e, 1000)
    checks.append(
        (f"A/A fixed horizon ({e} experiments, 1,000 users/arm, lognormal)", f"FPR {fpr:.1%}", 0.04 <= fpr <= 0.06)
    )
    naive, seq = aa_peeking(rng, e, 28, 100)
    checks.append(
        (f"A/A daily peeking, 28 looks ({e} experiments)", f"fixed-horizon test {naive:.1%} (for contrast)", True)
    )
    checks.append(("  same runs, always-valid confidence sequence", f"FPR {seq:.1%}", seq <= 0.06))
    planted, fair = srm_detection(rng, e, 20_000)
    expected = srm_power(20_000, 0.52)  # the chi-square test's own power: 52/48 of 20,000 is 5.7 sd off
    margin = 3 * math.sqrt(expected * (1 - expected) / e)  # three standard errors of the simulated share
    checks.append(
        (
            f"SRM, planted 52/48 split of 20,000 users ({e} draws)",
            f"flagged {planted:.1%} (chi-square power {expected:.1%})",
            planted >= expected - margin,
        )
    )
    checks.append(("SRM, fair 50/50 split", f"flagged {fair:.2%}", fair <= 0.005))
    n, promised, observed = power_check(rng, e)
    checks.append(
        (
            f"power: calculator says {n} users/arm give {promised:.1%}",
            f"observed {observed:.1%}",
            abs(observed - promised) <= 0.03,
        )
    )
    ratio, expected = cuped_check(rng, 0.7, 50_000)
    checks.append(
        (
            "CUPED, rho = 0.7: interval width ratio",
            f"{ratio:.3f} (expected {expected:.3f})",
            abs(ratio / expected - 1) < 0.02,
        )
    )

    width = max(len(c[0]) for c in checks)
    for name, value, ok in checks:
        print(f"{name:<{width}}  {value:<40} {'ok' if ok else 'MISS'}")
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

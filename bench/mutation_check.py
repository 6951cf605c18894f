"""Mutation check: plant each bug of issue 13's table, one at a time, in a temporary copy of the repository and
run the unit tests that should catch it. Prints caught / NOT CAUGHT per mutant; exits 1 if any survives, if the
unmutated copy already fails, or if a mutant's code is no longer in the source (the table needs updating).

    .venv/bin/python bench/mutation_check.py            # every mutant
    .venv/bin/python bench/mutation_check.py -k gini    # the mutants whose name contains "gini"

The checkout is never modified: the copy holds the working tree (tracked and untracked, not ignored files) and
its modules are imported from the copy, not from the editable install. The tests run are the unit tests (no
``--integration``) of every test file that names the mutated function.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # file, relative to the repository root
    original: str  # exact source text, found exactly once
    planted: str
    function: str  # test files naming it are the ones run


MUTANTS = [
    Mutant("ziln_loss: drop the log y term", "training/ziln.py",
           "nll = log_y + torch.log(sigma)", "nll = torch.log(sigma)", "ziln_loss"),
    Mutant("ziln_loss: drop the positive-label mask", "training/ziln.py",
           "(classification + positive * nll).mean()", "(classification + nll).mean()", "ziln_loss"),
    Mutant("gain_curve: no tie averaging", "training/metrics.py",
           "np.cumsum(block_mean[block])", "np.cumsum(y_sorted)", "gain_curve"),
    Mutant("gini: right-endpoint sum", "training/metrics.py",
           "np.sum((cumulative[1:] + cumulative[:-1]) / 2 * np.diff(customers))",
           "np.sum(cumulative[1:] * np.diff(customers))", "normalized_gini"),
    Mutant("bought_since: >= becomes >", "serving/freshness.py",
           "at >= cutoff", "at > cutoff", "bought_since"),
    Mutant("complete_labels: window end = cutoff + H - 1", "training/ltv_data.py",
           "window_end = frame[CUTOFF] + timedelta(days=horizon_days)",
           "window_end = frame[CUTOFF] + timedelta(days=horizon_days - 1)", "complete_labels"),
    Mutant("compare_to_champion: abs() on the Spearman change", "training/registry.py",
           "gain, drop = g_new - g_old, s_old - s_new", "gain, drop = g_new - g_old, abs(s_old - s_new)",
           "compare_to_champion"),
    Mutant("_older_data: >= becomes >", "training/registry.py",
           "ours >= theirs", "ours > theirs", "_older_data"),
    Mutant("select_diverse: step + 1 < n becomes step + 2 < n", "serving/diversity.py",
           "if step + 1 < n:", "if step + 2 < n:", "select_diverse"),
    Mutant("select_diverse: sum of similarities instead of max", "serving/diversity.py",
           "max_similarity = np.maximum(max_similarity, similarity.to_candidate(pick))",
           "max_similarity = max_similarity + similarity.to_candidate(pick)", "select_diverse"),
    Mutant("to_candidate: abs(cosine)", "serving/diversity.py",
           'cosine = np.einsum("bkd,bd->bk", self._unit, self._unit[self._rows, position])',
           'cosine = np.abs(np.einsum("bkd,bd->bk", self._unit, self._unit[self._rows, position]))', "to_candidate"),
    Mutant("to_candidate: 2 x cosine", "serving/diversity.py",
           'cosine = np.einsum("bkd,bd->bk", self._unit, self._unit[self._rows, position])',
           'cosine = 2 * np.einsum("bkd,bd->bk", self._unit, self._unit[self._rows, position])', "to_candidate"),
]  # fmt: skip

# Runs pytest with the package imported from the copy (the venv's editable install points at the checkout).
BOOT = """
import importlib.machinery, importlib.util, json, sys
MAPPING = json.loads(sys.argv.pop(1))
class CopyFinder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name in MAPPING:
            return importlib.util.spec_from_file_location(
                name, MAPPING[name] + "/__init__.py", submodule_search_locations=[MAPPING[name]])
        parent = name.rpartition(".")[0]
        if parent in MAPPING:
            return importlib.machinery.PathFinder.find_spec(name, [MAPPING[parent]])
        return None
sys.meta_path.insert(0, CopyFinder)
if sys.argv[1] == "--where":
    print(importlib.import_module(sys.argv[2]).__file__)
    sys.exit(0)
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def copy_tree(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()  # fmt: skip
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def package_mapping(copy: Path) -> dict[str, str]:
    """Import name -> folder in the copy, from the copy's own packaging (setuptools package-dir)."""
    config = tomllib.loads((copy / "pyproject.toml").read_text())
    dirs = config.get("tool", {}).get("setuptools", {}).get("package-dir", {}) or {"ltvfeed": "ltvfeed"}
    return {name: str(copy / folder) for name, folder in dirs.items() if name}


def tests_naming(copy: Path, function: str) -> list[str]:
    word = re.compile(rf"\b{re.escape(function)}\b")
    return sorted(
        str(p.relative_to(copy)) for p in (copy / "tests" / "unit").glob("test_*.py") if word.search(p.read_text())
    )


def run_tests(copy: Path, mapping: dict[str, str], tests: list[str], timeout: float) -> tuple[int, str]:
    args = ["-q", "-x", "-n", "0", "-p", "no:randomly", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(
            [sys.executable, "-c", BOOT, json.dumps(mapping), *args],
            cwd=copy, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, lines[-1] if lines else done.stderr.strip()[-300:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutants whose name contains this")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per test run")
    opts = parser.parse_args()
    mutants = [m for m in MUTANTS if opts.k.lower() in m.name.lower()]
    if not mutants:
        sys.exit(f"no mutant matches {opts.k!r}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: the running tests and the copy go too
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ltvfeed_mutants_") as tmp:
        copy = Path(tmp)
        copy_tree(copy)
        mapping = package_mapping(copy)
        where = subprocess.run(
            [sys.executable, "-c", BOOT, json.dumps(mapping), "--where", "ltvfeed.training.metrics"],
            cwd=copy, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not where.startswith(str(copy)):
            sys.exit(f"mutation check: modules load from {where}, not from the copy")

        plan = {m.name: tests_naming(copy, m.function) for m in mutants}
        every = sorted({t for tests in plan.values() for t in tests})
        code, summary = run_tests(copy, mapping, every, opts.timeout)
        print(f"unmutated copy: {len(every)} test files, {summary}", flush=True)
        if code != 0:
            print("mutation check: the tests fail without any mutant; fix them first")
            return 1

        survivors = stale = 0
        for m in mutants:
            target = copy / m.path
            source = target.read_text()
            if source.count(m.original) != 1:
                stale += 1
                print(f"STALE        {m.name}: {m.original!r} is not exactly once in {m.path}", flush=True)
                continue
            target.write_text(source.replace(m.original, m.planted))
            try:
                tests = plan[m.name]
                code, summary = run_tests(copy, mapping, tests, opts.timeout) if tests else (0, "no test names it")
            finally:
                target.write_text(source)
            caught = code in (1, 2)  # tests failed, or could not even be collected
            survivors += not caught
            verdict = "caught" if caught else "NOT CAUGHT"
            print(f"{verdict:<12} {m.name}  [{', '.join(tests) or '-'}: {summary}]", flush=True)
    print(f"{len(mutants) - survivors - stale} of {len(mutants)} mutants caught, {survivors} survived, {stale} stale "
          f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
    return 1 if survivors or stale else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Run every benchmark in turn (each prints its figures and its ratio against a baseline measured in the same
# run). Results are recorded by hand in docs/benchmarks.md. Extra arguments go to every script, e.g. --help.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
for script in bench/bench_*.py; do
  echo "=== $script"
  "$py" "$script" "$@"
done

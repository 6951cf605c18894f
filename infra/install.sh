#!/usr/bin/env bash
# Create .venv and install ltvfeed with the locked versions (constraints.txt). Safe to re-run: it returns at
# once when nothing changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${LTVFEED_VENV:-.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.ltvfeed-installed"
want="$(cat pyproject.toml constraints.txt infra/install.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

"$python" - <<'PY'
import sys
if not ((3, 11) <= sys.version_info[:2] < (3, 13)):
    sys.exit(f"ltvfeed needs Python 3.11 or 3.12 (found {sys.version.split()[0]}); set PYTHON=/path/to/python3.11")
PY
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
echo "installing ltvfeed into $venv (first time: a few minutes)..."
"${pip[@]}" install -q --upgrade pip

# PyTorch: the CPU build where one is available (this project's CI machines keep it on disk; a plain
# `torch` there would pull a multi-GB CUDA build); PyPI's default build everywhere else.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  "${pip[@]}" install -q "${LTVFEED_TORCH:-torch==2.13.0+cpu}" 2>/dev/null || "${pip[@]}" install -q torch
fi

"${pip[@]}" install -q -c constraints.txt -e ".[dev]"
echo "$want" > "$stamp"
echo "ltvfeed installed: $venv/bin/ltvfeed"

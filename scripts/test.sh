#!/usr/bin/env bash
# Install (dev profile) and run every check CI runs: lint, notebook hygiene, unit tests, the sm_90a
# kernel compile gate, the result-record check, and every notebook through papermill on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
py=.venv/bin/python
echo "== ruff"
.venv/bin/ruff check workbench tests scripts notebooks/*.py
echo "== notebooks in sync with their .py twins, committed without outputs"
$py scripts/sync_notebooks.py --check
echo "== pytest"
$py -m pytest -q "$@"

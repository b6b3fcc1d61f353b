#!/usr/bin/env bash
# Set up (idempotent), lint, check the import layering (pyproject.toml [tool.importlinter]), run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/lint-imports
.venv/bin/python -m pytest -q "$@"

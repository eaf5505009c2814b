#!/usr/bin/env bash
# Installs uv if missing and the locked dependencies into .venv. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never
if ! command -v uv >/dev/null 2>&1; then
  export PATH="$HOME/.local/bin:$PATH"
  command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet uv
fi
uv sync --frozen --quiet

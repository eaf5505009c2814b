#!/usr/bin/env bash
# Source this file: it installs uv if missing, syncs the locked dependencies into .venv, and
# defines `uv` as a function when uv is only importable as a module (no console script on PATH).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export UV_PYTHON_DOWNLOADS=never
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
  uv() { python3 -m uv "$@"; }
fi
uv sync --frozen --quiet

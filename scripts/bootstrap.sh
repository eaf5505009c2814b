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
# Bytecode compiled once, here: where PYTHONDONTWRITEBYTECODE is set (as on this project's
# machines, and in many container images) Python never caches it, and every process (each
# worker, CLI call, benchmark sync, test subprocess) compiled every module it imported again:
# a benchmark sync's start-up took 2.7 s of CPU, 1.2 s with bytecode (bench/README.md). Our own
# code too (installed editable, uv leaves it); a stale file is recompiled in memory, as before.
uv sync --frozen --quiet --compile-bytecode
uv run --frozen --quiet python -m compileall -q src bench

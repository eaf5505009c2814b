#!/usr/bin/env bash
# The main job: the demo sync on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
uv run ledgersync demo "$@"

#!/usr/bin/env bash
# The full test suite: lint, format, types, then pytest on SQLite and on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
source scripts/chromium.sh  # the console's browser tests (Playwright drives Debian's Chromium)
PG_URL="${TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"

echo "== ruff check";  uv run ruff check .
echo "== ruff format"; uv run ruff format --check .
echo "== mypy";        uv run mypy src tests bench
# pytest exits 5 when it collected no tests; `set -e` turns that into a failure too.
echo "== pytest (SQLite)"
TEST_DATABASE_URL="sqlite://" uv run pytest -q "$@"
echo "== pytest (PostgreSQL: ${PG_URL##*@})"
TEST_DATABASE_URL="$PG_URL" uv run pytest -q "$@"

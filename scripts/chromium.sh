#!/usr/bin/env bash
# Source this file: the console's browser tests drive Debian's Chromium through Playwright
# (`executable_path`; Playwright's own browser download is never used). Installs it when it is
# missing and we are root; otherwise fails, saying what to do: a missing dependency fails the
# run, it never skips the tests.
CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
export CHROMIUM_PATH
if [ ! -x "$CHROMIUM_PATH" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium (apt-get) for the console's browser tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y \
             --no-install-recommends chromium >/dev/null; }
  fi
  if [ ! -x "$CHROMIUM_PATH" ]; then
    echo "error: $CHROMIUM_PATH is missing: the console's browser tests need Chromium." >&2
    echo "       Install it (as root: apt-get install -y chromium) or set CHROMIUM_PATH." >&2
    exit 1
  fi
fi

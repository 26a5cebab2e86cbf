#!/usr/bin/env bash
# Install Debian's Chromium (and a font for readable screenshots) for the browser
# tests when it is missing. Idempotent and quiet: does nothing when
# /usr/bin/chromium exists, prints apt's output only when it fails.
# Playwright drives this system browser; `playwright install` is never run.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: $CHROMIUM is missing and apt-get is not available; install Chromium by hand" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >"$LOG" 2>&1; then
  cat "$LOG" >&2
  echo "error: installing chromium with apt-get failed" >&2
  exit 1
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "error: apt-get finished but $CHROMIUM is still missing" >&2
  exit 1
fi

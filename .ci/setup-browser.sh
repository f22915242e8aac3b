#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the report test (tests/test_report.py) if no browser is there.
# Non-interactive and tolerant of failure: without a browser that one test is skipped, with the reason printed.
set -u
for b in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$b" >/dev/null 2>&1; then
    echo "[setup-browser] found $(command -v "$b")"
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[setup-browser] no apt-get: skipping the Chromium install (the browser test will be skipped)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "[setup-browser] not root and no sudo: skipping the Chromium install"; exit 0; fi
fi
export DEBIAN_FRONTEND=noninteractive
if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
  echo "[setup-browser] installed $(command -v chromium)"
else
  echo "[setup-browser] Chromium install failed; the browser test will be skipped"
fi
exit 0

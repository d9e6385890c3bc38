#!/usr/bin/env bash
# Installs what the console's browser test needs: Debian's Chromium and a Korean
# font (only when missing) and playwright-core from browser/package-lock.json.
# Idempotent: a second run changes nothing. playwright-core never downloads a
# browser of its own; the test drives /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'install-browser: %s\n' "$*" >&2; exit 1; }

# A Korean font too, so the console's "원" renders in screenshots.
if [ ! -x /usr/bin/chromium ] || ! dpkg -s fonts-nanum >/dev/null 2>&1; then
  echo "install-browser: installing Debian chromium and fonts-nanum"
  command -v apt-get >/dev/null || die "apt-get not found; install chromium by hand"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends chromium fonts-nanum \
    || die "apt-get install chromium fonts-nanum failed"
fi
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium is still missing"

command -v npm >/dev/null || die "npm not found (Node.js is required)"
lock_hash() { sha256sum browser/package-lock.json | cut -d' ' -f1; }
stamp=browser/node_modules/.settle-lock-sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(lock_hash)" ] \
  && [ -d browser/node_modules/playwright-core ]; then
  echo "install-browser: browser/node_modules is current"
else
  echo "install-browser: npm ci in browser/"
  (cd browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) \
    || die "npm ci in browser/ failed"
  lock_hash >"$stamp"
fi
echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium), playwright-core $(node -p 'require("./browser/node_modules/playwright-core/package.json").version')"

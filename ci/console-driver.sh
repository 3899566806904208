#!/usr/bin/env bash
# Install the console tests' browser driver: playwright-core, exactly as
# tests/console/package-lock.json pins it, from the npm registry into
# target/console-driver (no browser download: the tests use Debian's /usr/bin/chromium).
# Idempotent and quiet when already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${CARGO_TARGET_DIR:-$PWD/target}/console-driver
if [[ -f $dest/node_modules/playwright-core/package.json ]] &&
  cmp -s tests/console/package-lock.json "$dest/package-lock.json"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "ci/console-driver.sh: needs npm (Node.js); ci/deps.sh installs it" >&2
  exit 1
fi
mkdir -p "$dest"
cp tests/console/package.json tests/console/package-lock.json "$dest/"
echo "ci/console-driver.sh: installing playwright-core into $dest" >&2
(cd "$dest" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)

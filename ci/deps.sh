#!/usr/bin/env bash
# Install what Roost's build, tests and demo need, idempotently and quietly:
# nothing is printed when everything is already there.
set -euo pipefail

APT_PACKAGES=(
  containerd runc protobuf-compiler busybox-static
  rt-tests stress-ng time qemu-system-x86 skopeo docker-registry
  iproute2 binutils gcc python3 openssl ca-certificates
  containernetworking-plugins iptables
  chromium chromium-driver
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The console's browser tests drive Chromium with playwright-core (Node.js + npm):
# a machine that already has a Node.js with npm (e.g. NodeSource's) keeps it.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "ci/deps.sh: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "ci/deps.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The OpenAPI document is checked with a real validator.
if ! python3 -c "import openapi_spec_validator" >/dev/null 2>&1; then
  echo "ci/deps.sh: installing openapi-spec-validator (PyPI)" >&2
  python3 -m pip install -q --root-user-action=ignore openapi-spec-validator >/dev/null 2>&1 ||
    python3 -m pip install -q openapi-spec-validator >/dev/null
fi

# Debian's containerd/docker-registry units must not grab the system sockets; Roost
# starts private daemons. (They are not started in containers without systemd anyway.)
if ! command -v cargo-nextest >/dev/null 2>&1 && ! cargo nextest --version >/dev/null 2>&1; then
  echo "ci/deps.sh: installing cargo-nextest" >&2
  cargo install --locked --quiet cargo-nextest
fi

# The console's browser tests: playwright-core (pinned by tests/console/package-lock.json).
"$(dirname "$0")/console-driver.sh"

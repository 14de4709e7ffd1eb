#!/usr/bin/env bash
# Installs the tools tests/test_observability.py needs, only when they are missing:
#   - Debian's `prometheus` package (the `prometheus` server and `promtool`), from the distro
#     (bookworm ships 2.42.x); its service is never started (no Prometheus is left on :9090);
#   - @grafana/schema and typescript from npm, pinned, into .tools/grafana (gitignored), to
#     type-check deploy/grafana/dashboards/*.json against Grafana's published Dashboard type,
#     and yaml (the tests read the Prometheus YAML files with it: the venv has no YAML library).
# A re-run with everything in place only checks and returns.
set -euo pipefail

GRAFANA_SCHEMA_VERSION=13.2.3
TYPESCRIPT_VERSION=5.9.3
YAML_VERSION=2.9.1
TOOLS="$(cd "$(dirname "$0")/.." && pwd)/.tools/grafana"

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "installing: prometheus (Debian package: prometheus, promtool)"
  # The package's postinst would start the service: a policy-rc.d answering 101 forbids that
  # (kept as it is when the machine already has one).
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  cleanup() { if [ -n "$made_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup EXIT
  # (waiting for the dpkg lock when another install runs at the same time)
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends prometheus >/dev/null
  cleanup
  trap - EXIT
fi

installed_version() {  # the version in node_modules/$1/package.json, or nothing
  local manifest="$TOOLS/node_modules/$1/package.json"
  [ -f "$manifest" ] &&
    sed -n -E 's/^[[:space:]]*"version":[[:space:]]*"([^"]*)".*/\1/p' "$manifest" | head -n 1
}

if [ "$(installed_version @grafana/schema)" != "$GRAFANA_SCHEMA_VERSION" ] \
  || [ "$(installed_version typescript)" != "$TYPESCRIPT_VERSION" ] \
  || [ "$(installed_version yaml)" != "$YAML_VERSION" ] \
  || [ ! -x "$TOOLS/node_modules/.bin/tsc" ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm is missing (node 18+ needed)" >&2; exit 1; }
  pkgs=("@grafana/schema@$GRAFANA_SCHEMA_VERSION" "typescript@$TYPESCRIPT_VERSION"
        "yaml@$YAML_VERSION")
  echo "installing: ${pkgs[*]} -> $TOOLS"
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --save-exact --no-audit --no-fund --loglevel=error \
    "${pkgs[@]}" >/dev/null
fi

#!/usr/bin/env bash
# Installs, only when missing, the LiteLLM proxy that tests/test_litellm.py runs the summarizer
# against (an OpenAI-compatible server nobody on this project wrote), into its own venv at
# .tools/litellm (gitignored), from PyPI through pip:
#   .tools/litellm/bin/litellm   litellm[proxy] 1.106.12
# Its own venv, not the dev extra: litellm pins openai < 3 (1.106.12 wants openai 2.54.0) and
# distcrawl runs on openai 3. The pin: 1.108.x and 1.110.x declare a [proxy] extra whose
# litellm-proxy(-extras) releases are not on PyPI; the 1.107 series was withdrawn.
# Re-runs are instant. Prints nothing on success except what it installed.
set -euo pipefail

LITELLM_VERSION=1.106.12

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.tools/litellm"
PYTHON="${PYTHON:-python3}"

if [ -x "$VENV/bin/litellm" ] && [ -f "$VENV/.litellm-$LITELLM_VERSION" ]; then
  exit 0
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
mkdir -p "$ROOT/.tools"
{ "$PYTHON" -m venv "$VENV" &&
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "litellm[proxy]==$LITELLM_VERSION"; } >"$log" 2>&1 || {
  echo "tools-litellm: installing litellm[proxy]==$LITELLM_VERSION failed:" >&2
  cat "$log" >&2
  exit 1
}
touch "$VENV/.litellm-$LITELLM_VERSION"
echo "installed: $VENV (litellm[proxy]==$LITELLM_VERSION)"

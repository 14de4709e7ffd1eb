#!/usr/bin/env bash
# Opt-in smoke test of the container image (NOT run by CI or `make test`):
#   1. builds deploy/Dockerfile with podman (on a base image made by debootstrap unless
#      BASE_IMAGE names one that exists, since no container registry may be reachable),
#   2. starts a local redis-server and a slow local test site, produces seeds,
#   3. runs one crawler container (read-only root, host network), checks that /metrics and
#      /healthz answer and that the image's HEALTHCHECK passes,
#   4. stops it with SIGTERM (the image's STOPSIGNAL) while pages are in flight and checks that it
#      exits 0 within the drain grace with every lease released (`status --json`: in_flight 0).
#
# Prerequisites (a Debian host, as root; nothing else is downloaded but Debian packages from
# DEBIAN_MIRROR and the image's Python packages from PyPI):
#   apt-get install -y podman runc debootstrap redis-server curl python3
# Usage, from anywhere:
#   bash deploy/smoke.sh
# Environment knobs:
#   BASE_IMAGE      base image with python3.11 as `python` (default localhost/distcrawl-base:
#                   bookworm, built with debootstrap when missing; python:3.11-slim-bookworm
#                   works too where a registry is reachable)
#   DEBIAN_MIRROR   default http://deb.debian.org/debian; DEBIAN_SUITE default bookworm
#   IMAGE           tag to build (default localhost/distcrawl:smoke)
#   GRACE           drain grace in seconds given to the worker (default 10)
#   EXTRA_CA_BUNDLE a PEM bundle baked into the debootstrap base image (and named in its
#                   /etc/pip.conf), for hosts whose HTTPS goes through an intercepting proxy;
#                   e.g. EXTRA_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
#   PODMAN_FLAGS    global podman flags (default: --runtime runc --cgroup-manager cgroupfs
#                   --events-backend file, which work without systemd)
#   ULIMITS         container ulimits (default "nofile=16384:16384 nproc=8192:8192"); explicit
#                   values, because podman's defaults may exceed what a nested host allows
#   KEEP=1          keep the container and the temporary directory for inspection
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASE_IMAGE="${BASE_IMAGE:-localhost/distcrawl-base:bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
EXTRA_CA_BUNDLE="${EXTRA_CA_BUNDLE:-}"
IMAGE="${IMAGE:-localhost/distcrawl:smoke}"
GRACE="${GRACE:-10}"
CRAWL="smoke$$"
read -r -a PODMAN_FLAGS <<<"${PODMAN_FLAGS:---runtime runc --cgroup-manager cgroupfs --events-backend file}"
pm() { podman "${PODMAN_FLAGS[@]}" "$@"; }
ULIMIT_ARGS=()
for limit in ${ULIMITS:-nofile=16384:16384 nproc=8192:8192}; do ULIMIT_ARGS+=(--ulimit "$limit"); done

say() { printf '[smoke] %s\n' "$*"; }
die() { printf '[smoke] FAIL: %s\n' "$*" >&2; exit 1; }

for tool in podman redis-server curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (see Prerequisites at the top)"
done

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WORK="$(mktemp -d)"
CID=""
REDIS_PID=""
SITE_PID=""
cleanup() {
  local rc=$?
  if [ -n "$CID" ] && [ "${KEEP:-0}" != 1 ]; then pm rm -f "$CID" >/dev/null 2>&1 || true; fi
  if [ -n "$SITE_PID" ]; then kill "$SITE_PID" 2>/dev/null || true; fi
  if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then say "kept $WORK and container ${CID:-none}"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT

# ---- 1. base image and build -----------------------------------------------------------
if ! pm image exists "$BASE_IMAGE"; then
  [ "$BASE_IMAGE" = "localhost/distcrawl-base:bookworm" ] ||
    die "BASE_IMAGE $BASE_IMAGE does not exist (pull or build it first)"
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing"
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
  say "building $BASE_IMAGE with debootstrap ($DEBIAN_SUITE from $DEBIAN_MIRROR)"
  rootfs="$WORK/rootfs"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates \
    "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  if [ -n "${EXTRA_CA_BUNDLE:-}" ]; then
    install -m 0644 "$EXTRA_CA_BUNDLE" "$rootfs/etc/ssl/certs/extra-ca-bundle.pem"
    printf '[global]\ncert = /etc/ssl/certs/extra-ca-bundle.pem\n' >"$rootfs/etc/pip.conf"
  fi
  tar -C "$rootfs" -c . | pm import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi

say "building $IMAGE from deploy/Dockerfile on $BASE_IMAGE"
# --format docker keeps HEALTHCHECK (the OCI image format has no field for it).
pm build --format docker --network host --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
  -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 ||
  { tail -30 "$WORK/build.log" >&2; die "image build failed"; }
[ "$(pm image inspect -f '{{.Config.User}}' "$IMAGE")" = "10001:10001" ] ||
  die "image user is not 10001:10001"

# ---- 2. redis, a slow site, seeds ------------------------------------------------------
RPORT="$(free_port)"
SPORT="$(free_port)"
MPORT="$(free_port)"
REDIS_URL="redis://127.0.0.1:$RPORT/0"
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
# 200 pages, 5 links each, every answer delayed 1.5 s so pages are in flight at SIGTERM.
python3 - "$SPORT" >"$WORK/site.log" 2>&1 <<'PY' &
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if not self.path.startswith("/p/"):
            if self.path != "/":
                self.send_error(404)
                return
            n = 0
        else:
            n = int(self.path[3:] or 0)
        time.sleep(1.5)
        links = "".join(f'<a href="/p/{(n * 5 + i) % 200}">p{i}</a>' for i in range(1, 6))
        body = f"<html><head><title>page {n}</title></head><body><p>Page {n}.</p>{links}</body></html>"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
PY
SITE_PID=$!
for _ in $(seq 50); do
  redis-cli -p "$RPORT" ping >/dev/null 2>&1 &&
    curl -fsS -o /dev/null "http://127.0.0.1:$SPORT/p/1" 2>/dev/null && break
  sleep 0.2
done

run_cli() {  # run a one-shot distcrawl command in the image, against the local Redis
  pm run --rm --network host "${ULIMIT_ARGS[@]}" --no-healthcheck -e "DISTCRAWL_REDIS=$REDIS_URL" \
    -e "DISTCRAWL_CRAWL=$CRAWL" "$IMAGE" "$@"
}
say "producing seeds"
run_cli produce "http://127.0.0.1:$SPORT/" --rate 20 --burst 20 --per-domain-inflight 8 \
  >"$WORK/produce.log" 2>&1 || { cat "$WORK/produce.log" >&2; die "produce failed"; }

# ---- 3. the crawler container ----------------------------------------------------------
say "starting a crawler container"
CID="$(pm run -d --network host "${ULIMIT_ARGS[@]}" --read-only --tmpfs /tmp \
  -e "DISTCRAWL_REDIS=$REDIS_URL" -e "DISTCRAWL_CRAWL=$CRAWL" -e DISTCRAWL_ALLOW_PRIVATE=1 \
  -e "DISTCRAWL_METRICS_PORT=$MPORT" -e "DISTCRAWL_WORKER__GRACE_S=$GRACE" \
  -e DISTCRAWL_CRAWLER__CONCURRENCY=8 "$IMAGE" crawl 2>>"$WORK/podman.log")" ||
  { cat "$WORK/podman.log" >&2; die "the crawler container did not start"; }

ok=""
for _ in $(seq 60); do
  if curl -fsS "http://127.0.0.1:$MPORT/metrics" >"$WORK/metrics.txt" 2>/dev/null; then ok=1; break; fi
  sleep 1
done
[ -n "$ok" ] || { pm logs "$CID" >&2 || true; die "/metrics did not answer within 60 s"; }
grep -q '^distcrawl_frontier_queued' "$WORK/metrics.txt" || die "/metrics lacks distcrawl_frontier_queued"
curl -fsS -o /dev/null "http://127.0.0.1:$MPORT/healthz" || die "/healthz is not 200"
pm healthcheck run "$CID" >/dev/null || die "the image HEALTHCHECK (distcrawl health) failed"
say "/metrics, /healthz and HEALTHCHECK answer"

# Wait until pages are done and some are in flight, then stop.
in_flight() {
  run_cli status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["in_flight"])'
}
done_pages() {
  run_cli status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["done"])'
}
for _ in $(seq 60); do
  [ "$(done_pages)" -gt 0 ] && [ "$(in_flight)" -gt 0 ] && break
  sleep 1
done
[ "$(in_flight)" -gt 0 ] || die "nothing was in flight to drain"

# ---- 4. SIGTERM: drain within the grace, leases released --------------------------------
say "stopping with SIGTERM (grace ${GRACE}s)"
start=$(date +%s.%N)
# (Without systemd, podman logs that it cannot manage healthcheck timers: harmless, the check is
# run explicitly above; those lines go to $WORK/podman.log.)
pm stop --time "$((GRACE + 20))" "$CID" >/dev/null 2>>"$WORK/podman.log"
elapsed=$(python3 -c "import sys; print(round($(date +%s.%N) - $start, 1))")
code="$(pm inspect -f '{{.State.ExitCode}}' "$CID")"
pm logs "$CID" >"$WORK/crawler.log" 2>&1 || true
[ "$code" = 0 ] || { tail -20 "$WORK/crawler.log" >&2; die "exit code $code (expected 0)"; }
python3 -c "import sys; sys.exit(0 if $elapsed <= $GRACE + 5 else 1)" ||
  die "took ${elapsed}s to stop (grace ${GRACE}s + 5s)"
left="$(in_flight)"
[ "$left" = 0 ] || die "$left leases still held after the worker stopped"
say "stopped in ${elapsed}s with exit code 0 and no lease left"
say "PASS"

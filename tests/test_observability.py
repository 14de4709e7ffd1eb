"""Prometheus configs, alert rules and the Grafana dashboard, checked with the real tools.

- promtool validates the scrape configs and the rules and runs the rules' unit tests;
- promtool lints the /metrics output of real crawl and summarize workers;
- a real Prometheus scrapes real workers (with the scrape configs' own relabel rules), then every
  dashboard query and every alert expression runs against it;
- the dashboard's structure is checked here and its JSON is type-checked by tsc against the
  Dashboard type Grafana publishes (@grafana/schema).

The tools come from .ci/tools-observability.sh (Debian's prometheus package; npm packages in
.tools/grafana), which the session fixture runs: missing tools fail, they never skip.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distcrawl.redis_server import RedisServer, free_port
from tests.processes import (
    ROOT,
    MockProcess,
    SiteProcess,
    produce,
    run_text,
    scrape_metrics,
    stop_process,
)

pytestmark = pytest.mark.tools

PROM_DIR = ROOT / "deploy" / "prometheus"
PROM_COMPOSE = PROM_DIR / "prometheus.yml"
PROM_K8S = PROM_DIR / "prometheus-k8s.yml"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "distcrawl.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = GRAFANA_DIR / "provisioning" / "dashboards" / "distcrawl.yml"
DOCS = ROOT / "docs" / "observability.md"
NODE_MODULES = ROOT / ".tools" / "grafana" / "node_modules"
WORKER_JOBS = ("distcrawl-crawler", "distcrawl-summarizer")


# -- tools ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    promtool: str
    prometheus: str
    node: str
    tsc: Path


@pytest.fixture(scope="session")
def tools() -> Tools:
    """Install what is missing (instant when all is there), then insist that it is there."""
    setup = subprocess.run(
        ["bash", str(ROOT / ".ci" / "tools-observability.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert setup.returncode == 0, f"tools-observability.sh failed:\n{setup.stdout}{setup.stderr}"
    found = {name: shutil.which(name) for name in ("promtool", "prometheus", "node")}
    tsc = NODE_MODULES / ".bin" / "tsc"
    missing = [name for name, path in found.items() if path is None]
    missing += [
        str(p)
        for p in (tsc, NODE_MODULES / "@grafana" / "schema", NODE_MODULES / "yaml")
        if not p.exists()
    ]
    assert not missing, f"missing after .ci/tools-observability.sh: {missing}"
    promtool, prometheus, node = (found["promtool"], found["prometheus"], found["node"])
    assert promtool is not None
    assert prometheus is not None
    assert node is not None
    return Tools(promtool, prometheus, node, tsc)


def run(
    args: list[str | Path], *, cwd: Path = ROOT, input_text: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return run_text(args, cwd=cwd, input_text=input_text, timeout=timeout)


_yaml_cache: dict[Path, Any] = {}

_YAML_TO_JSON = (
    "const fs = require('fs'); const YAML = require('yaml');"
    "process.stdout.write(JSON.stringify(YAML.parse(fs.readFileSync(process.argv[1], 'utf8'))));"
)


def load_yaml(tools: Tools, path: Path) -> Any:
    """A YAML file as JSON data, parsed by the npm `yaml` package (the venv has no YAML library)."""
    if path not in _yaml_cache:
        proc = subprocess.run(
            [tools.node, "-e", _YAML_TO_JSON, str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        )
        assert proc.returncode == 0, f"cannot parse {path}: {proc.stderr}"
        _yaml_cache[path] = json.loads(proc.stdout)
    return copy.deepcopy(_yaml_cache[path])


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def alert_rules(alerts_doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in alerts_doc["groups"] for rule in group["rules"] if "alert" in rule]


# -- 1. promtool: configs, rules, rule unit tests ------------------------------------------------


def test_compose_config_is_valid(tools: Tools) -> None:
    proc = run([tools.promtool, "check", "config", PROM_COMPOSE])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rules found" in proc.stdout, proc.stdout  # it checked alerts.yml too


def test_compose_discovery_contract(tools: Tools) -> None:
    """Compose: DNS names crawler/summarizer, A records, port 9400, a crawl target label."""
    config = load_yaml(tools, PROM_COMPOSE)
    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job_name, dns_name in zip(WORKER_JOBS, ("crawler", "summarizer"), strict=True):
        job = jobs[job_name]
        assert job["dns_sd_configs"] == [
            {"names": [dns_name], "type": "A", "port": 9400, "refresh_interval": "15s"}
        ], job
        assert any(r.get("target_label") == "crawl" for r in job["relabel_configs"]), job


def _k8s_as_static(config: dict[str, Any]) -> dict[str, Any]:
    """The k8s config with its pod discovery replaced by one static target (same relabels)."""
    out = copy.deepcopy(config)
    for job in out["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["127.0.0.1:1"]}]
    return out


def test_k8s_config_is_valid(tools: Tools, tmp_path: Path) -> None:
    """promtool checks prometheus-k8s.yml; Debian's Prometheus is built without Kubernetes
    discovery, so when it rejects exactly `kubernetes_sd_configs`, everything else (relabel
    rules, regexes, rule files) is checked on a copy whose pod discovery is a static target,
    and the relabel rules themselves run in test_k8s_relabeling_keeps_worker_pods."""
    proc = run([tools.promtool, "check", "config", PROM_K8S])
    if proc.returncode != 0:
        assert "field kubernetes_sd_configs not found" in proc.stdout + proc.stderr, (
            proc.stdout + proc.stderr
        )
        copy_path = tmp_path / "prometheus-k8s-static.yml"
        copy_path.write_text(json.dumps(_k8s_as_static(load_yaml(tools, PROM_K8S))))
        shutil.copy(ALERTS, tmp_path / "alerts.yml")
        proc = run([tools.promtool, "check", "config", copy_path])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = load_yaml(tools, PROM_K8S)
    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == ["alerts.yml"]
    k8s = [job for job in config["scrape_configs"] if "kubernetes_sd_configs" in job]
    assert len(k8s) == 1, k8s
    assert k8s[0]["kubernetes_sd_configs"] == [{"role": "pod"}], k8s


def test_alert_rules_pass_check_and_unit_tests(tools: Tools) -> None:
    checked = run([tools.promtool, "check", "rules", ALERTS])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run([tools.promtool, "test", "rules", ALERTS_TEST.name], cwd=PROM_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout, tested.stdout


def coverage_problems(alerts_doc: dict[str, Any], tests_doc: dict[str, Any]) -> list[str]:
    """Alerts of ``alerts_doc`` without a firing case or without a quiet case in ``tests_doc``."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in tests_doc.get("tests") or []:
        for case in group.get("alert_rule_test") or []:
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    problems = []
    for rule in alert_rules(alerts_doc):
        name = rule["alert"]
        if name not in firing:
            problems.append(f"{name}: no case where it fires")
        if name not in quiet:
            problems.append(f"{name}: no case where it stays quiet")
    return problems


def test_every_alert_has_a_firing_and_a_quiet_case(tools: Tools) -> None:
    alerts_doc = load_yaml(tools, ALERTS)
    assert len(alert_rules(alerts_doc)) >= 9
    assert coverage_problems(alerts_doc, load_yaml(tools, ALERTS_TEST)) == []


def test_coverage_check_catches_missing_cases(tools: Tools) -> None:
    alerts_doc = load_yaml(tools, ALERTS)
    tests_doc = load_yaml(tools, ALERTS_TEST)
    for group in tests_doc["tests"]:  # drop the quiet cases of one alert
        group["alert_rule_test"] = [
            case
            for case in group["alert_rule_test"]
            if case["alertname"] != "DistcrawlNoProgress" or case.get("exp_alerts")
        ]
    alerts_doc["groups"][0]["rules"].append({"alert": "DistcrawlUntested", "expr": "vector(1)"})
    assert sorted(coverage_problems(alerts_doc, tests_doc)) == [
        "DistcrawlNoProgress: no case where it stays quiet",
        "DistcrawlUntested: no case where it fires",
        "DistcrawlUntested: no case where it stays quiet",
    ]


def test_alerts_have_severity_annotations_and_runbooks(tools: Tools) -> None:
    headings = {
        line.lstrip("#").strip().lower()
        for line in DOCS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alert_rules(load_yaml(tools, ALERTS)):
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        assert annotations["runbook_url"] == f"docs/observability.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/observability.md has no section {name}"


# -- 4. the dashboard's structure ---------------------------------------------------------------

_VAR_REF = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def variables_used(expr: str) -> set[str]:
    return {a or b for a, b in _VAR_REF.findall(expr)}


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included (rows themselves too)."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _layout_problems(panels: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    seen_ids: set[int] = set()
    for panel in panels:
        pid = panel.get("id")
        where = f"panel {pid} {panel.get('title')!r}"
        if not isinstance(pid, int) or pid in seen_ids:
            problems.append(f"{where}: id missing or not unique")
        else:
            seen_ids.add(pid)
        pos = panel.get("gridPos", {})
        if not all(isinstance(pos.get(k), int) for k in "xywh"):
            problems.append(f"{where}: gridPos needs integer x, y, w, h")
        elif pos["x"] < 0 or pos["w"] < 1 or pos["x"] + pos["w"] > 24:
            problems.append(f"{where}: gridPos x={pos['x']} w={pos['w']} leaves the 24 columns")
    return problems


def _query_problems(
    panel: dict[str, Any], datasource_uid: str, ds_variables: set[str], used: set[str]
) -> list[str]:
    """A panel's datasources and queries; adds the variables its queries use to ``used``."""
    problems: list[str] = []
    where = f"panel {panel.get('id')} {panel.get('title')!r}"
    targets = panel.get("targets") or []
    if not targets:
        problems.append(f"{where}: no query")
    for ref in [panel.get("datasource")] + [t.get("datasource") for t in targets]:
        uid = str((ref or {}).get("uid"))
        by_variable = _VAR_REF.fullmatch(uid) is not None and variables_used(uid) <= ds_variables
        if uid != datasource_uid and not by_variable:
            problems.append(f"{where}: datasource {ref!r} is not uid {datasource_uid!r}")
    for target in targets:
        expr = target.get("expr", "")
        names = variables_used(expr)
        used |= names
        problems += [
            f"{where} {target.get('refId')}: query does not use ${needed}: {expr}"
            for needed in ("crawl", "instance")
            if needed not in names
        ]
    return problems


def dashboard_problems(dashboard: dict[str, Any], datasource_uid: str) -> list[str]:
    """Unique panel ids, panels within 24 columns, the provisioned datasource everywhere, every
    query using $crawl and $instance, every variable used."""
    templating = dashboard.get("templating", {}).get("list", [])
    variables = [v["name"] for v in templating]
    # A datasource variable counts as the provisioned datasource when its value is that uid.
    ds_variables = {
        v["name"]
        for v in templating
        if v.get("type") == "datasource" and (v.get("current") or {}).get("value") == datasource_uid
    }
    panels = panels_of(dashboard)
    problems = _layout_problems(panels)
    used: set[str] = set()
    for panel in panels:
        if panel.get("type") != "row":
            problems += _query_problems(panel, datasource_uid, ds_variables, used)
    problems += [
        f"variable {v!r} is used by no query"
        for v in variables
        if v not in used and v not in ds_variables
    ]
    if "crawl" not in variables:
        problems.append("no crawl variable")
    return problems


def provisioned_datasource_uid(tools: Tools) -> str:
    datasources = load_yaml(tools, DATASOURCES)["datasources"]
    assert len(datasources) == 1, datasources
    assert datasources[0]["type"] == "prometheus", datasources
    uid: str = datasources[0]["uid"]
    return uid


def test_dashboard_structure(tools: Tools) -> None:
    uid = provisioned_datasource_uid(tools)
    assert uid == "distcrawl-prom"
    dashboard = load_dashboard()
    assert dashboard_problems(dashboard, uid) == []
    titles = " ".join(p.get("title", "") for p in panels_of(dashboard)).lower()
    for topic in (
        "pages settled/s by outcome",
        "fetch latency",
        "status class",
        "bytes",
        "retries",
        "dead letters",
        "frontier",
        "domains",
        "in flight",
        "per worker",
        "llm requests/s",
        "llm latency",
        "tokens/min",
        "cost/hour",
        "rate limiting",
        "adaptive",
        "docs backlog",
        "redis memory",
    ):
        assert topic in titles, f"no panel about {topic!r}"
    provider = load_yaml(tools, DASHBOARD_PROVIDER)["providers"]
    assert provider[0]["type"] == "file"
    assert provider[0]["options"]["path"] == "/var/lib/grafana/dashboards"


def _first(dashboard: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(p for p in panels_of(dashboard) if p.get("type") == kind)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("duplicate id", "id missing or not unique"),
        ("too wide", "leaves the 24 columns"),
        ("other datasource", "is not uid"),
        ("query without crawl", "does not use $crawl"),
        ("unused variable", "used by no query"),
    ],
)
def test_dashboard_structure_check_catches(tools: Tools, breakage: str, expected: str) -> None:
    uid = provisioned_datasource_uid(tools)
    dashboard = load_dashboard()
    panel = _first(dashboard, "timeseries")
    if breakage == "duplicate id":
        _first(dashboard, "stat")["id"] = panel["id"]
    elif breakage == "too wide":
        panel["gridPos"]["x"] = 20
    elif breakage == "other datasource":
        panel["datasource"] = {"type": "prometheus", "uid": "someone-elses"}
    elif breakage == "query without crawl":
        panel["targets"][0]["expr"] = 'sum(rate(distcrawl_pages_total{instance=~"$instance"}[5m]))'
    elif breakage == "unused variable":
        dashboard["templating"]["list"].append({"name": "zone", "type": "custom", "query": "a,b"})
    problems = dashboard_problems(dashboard, uid)
    assert any(expected in p for p in problems), problems


# -- 5. the dashboard against Grafana's published schema ----------------------------------------


def typecheck_dashboard(tools: Tools, workdir: Path, dashboard_json: str) -> str:
    """tsc --strict on `(<dashboard JSON>) satisfies Dashboard`; '' when it type-checks, else
    tsc's complaints."""
    workdir.mkdir(parents=True, exist_ok=True)
    link = workdir / "node_modules"
    if not link.exists():
        link.symlink_to(NODE_MODULES, target_is_directory=True)
    source = workdir / "dashboard.ts"
    source.write_text(
        "import type { Dashboard } from '@grafana/schema';\n"
        f"const dashboard = ({dashboard_json}) satisfies Dashboard;\n"
        "export default dashboard;\n"
    )
    proc = run(
        [
            tools.tsc,
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            source,
        ],
        cwd=workdir,
        timeout=120,
    )
    if proc.returncode == 0:
        return ""
    return proc.stdout + proc.stderr or f"tsc exited {proc.returncode}"


def test_dashboard_satisfies_grafana_schema(tools: Tools, tmp_path: Path) -> None:
    assert typecheck_dashboard(tools, tmp_path, DASHBOARD.read_text()) == ""


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("gridPos w as a string", "Type 'string' is not assignable to type 'number'"),
        ("unknown top-level field", "refreshEvery\"' does not exist in type 'Dashboard'"),
        ("panel without a type", "Property 'type' is missing"),
    ],
)
def test_schema_check_catches_broken_dashboards(
    tools: Tools, tmp_path: Path, breakage: str, expected: str
) -> None:
    dashboard = load_dashboard()
    panel = _first(dashboard, "timeseries")
    if breakage == "gridPos w as a string":
        panel["gridPos"]["w"] = "12"
    elif breakage == "unknown top-level field":
        dashboard["refreshEvery"] = "30s"
    elif breakage == "panel without a type":
        del panel["type"]
    errors = typecheck_dashboard(tools, tmp_path, json.dumps(dashboard, indent=1))
    assert expected in errors, errors


# -- a live stack: Redis, a site, produce, crawl, summarize, mock LLM, Prometheus ---------------


def http_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class Stack:
    crawl: str
    crawl_port: int
    summarize_port: int
    prom_url: str
    k8s_crawl: str
    logs: Path

    def query(self, expr: str) -> dict[str, Any]:
        """/api/v1/query; the whole answer (status, data or error)."""
        url = f"{self.prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            answer: dict[str, Any] = http_json(url)
        except urllib.error.HTTPError as exc:  # 400/422: a bad expression
            with exc:
                answer = json.loads(exc.read())
        return answer

    def values(self, expr: str) -> list[float]:
        answer = self.query(expr)
        assert answer["status"] == "success", (expr, answer)
        return [float(r["value"][1]) for r in answer["data"]["result"]]

    def log_tail(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.logs.glob("*.log"))
        )


def _wait(what: str, check: Callable[[], bool], deadline: float, stack: Stack | None) -> None:
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, ValueError, KeyError, AssertionError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{stack.log_tail() if stack else ''}")


def _spawn(
    logs: Path,
    name: str,
    args: list[str],
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """A long-running process whose output goes to logs/NAME.log (a pipe nobody reads could
    fill up and block it)."""
    out = (logs / f"{name}.log").open("w")
    try:
        return subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
    finally:
        out.close()


def _k8s_pod(name: str, port: int, **meta: str) -> dict[str, Any]:
    labels = {
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_namespace": "distcrawl",
        "__meta_kubernetes_pod_ip": "127.0.0.1",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_annotation_prometheus_io_port": str(port),
    }
    labels.update({f"__meta_kubernetes_pod_{k}": v for k, v in meta.items()})
    return {"targets": ["127.0.0.1:1"], "labels": labels}


def live_prometheus_config(tools: Tools, stack: Stack) -> dict[str, Any]:
    """prometheus.yml's worker jobs with their relabel rules, the DNS discovery swapped for the
    local workers, scraped every second; plus prometheus-k8s.yml's pod job, fed with pods
    described by the labels Kubernetes discovery would give them."""
    compose = load_yaml(tools, PROM_COMPOSE)
    ports = dict(zip(WORKER_JOBS, (stack.crawl_port, stack.summarize_port), strict=True))
    jobs: list[dict[str, Any]] = []
    for job in compose["scrape_configs"]:
        if job["job_name"] not in ports:
            continue
        relabels = job.get("relabel_configs", [])
        for rule in relabels:
            if rule.get("target_label") == "crawl" and "source_labels" not in rule:
                rule["replacement"] = stack.crawl  # the Compose project's crawl name
        jobs.append(
            {
                "job_name": job["job_name"],
                "relabel_configs": relabels,
                "static_configs": [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}],
            }
        )
    k8s_job = next(
        j for j in load_yaml(tools, PROM_K8S)["scrape_configs"] if "kubernetes_sd_configs" in j
    )
    scrape = {"annotation_prometheus_io_scrape": "true"}
    pods = [
        _k8s_pod(
            "crawler-0",
            stack.crawl_port,
            container_name="crawler",
            annotation_distcrawl_io_crawl=stack.k8s_crawl,
            **scrape,
        ),
        _k8s_pod(
            "summarizer-0",
            stack.summarize_port,
            container_name="main",
            label_app_kubernetes_io_component="summarizer",
            **scrape,
        ),
        _k8s_pod("redis-0", stack.crawl_port, container_name="redis", **scrape),
        _k8s_pod("crawler-unannotated", stack.crawl_port, container_name="crawler"),
    ]
    jobs.append(
        {
            "job_name": "k8s-pods",
            "relabel_configs": k8s_job["relabel_configs"],
            "static_configs": pods,
        }
    )
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": jobs,
    }


@pytest.fixture(scope="module")
def stack(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("observability")
    logs = work / "logs"
    logs.mkdir()
    crawl = f"obs{os.getpid()}"
    stopped: list[Callable[[], None]] = []
    procs: list[subprocess.Popen[str]] = []
    try:
        # Its own Redis, with a maxmemory, so the memory ratio panel and alert have data.
        redis = RedisServer(work / "redis", None, "--maxmemory", "256mb")
        redis.start()
        stopped.append(redis.stop)
        site = SiteProcess(
            work / "site.log", "--addresses", "127.0.0.1", "--pages", "60", "--page-delay", "0.02"
        )
        stopped.append(site.stop)
        mock = MockProcess("--api-key", "sk-observe", "--latency", "0.05", "--rpm", "12")
        stopped.append(mock.stop)
        store = ["--redis", redis.url, "--crawl", crawl]
        produce(store, site.roots, rate=30, burst=8)
        stack = Stack(crawl, free_port(), free_port(), "", f"{crawl}k8s", logs)
        distcrawl = [sys.executable, "-m", "distcrawl.cli"]
        procs.append(
            _spawn(
                logs,
                "crawl",
                [
                    *distcrawl,
                    "crawl",
                    *store,
                    "--allow-private",
                    "--concurrency",
                    "8",
                    "--grace",
                    "1",
                    "--metrics-port",
                    str(stack.crawl_port),
                ],
            )
        )
        procs.append(
            _spawn(
                logs,
                "summarize",
                [
                    *distcrawl,
                    "summarize",
                    *store,
                    "--concurrency",
                    "4",
                    "--grace",
                    "1",
                    "--metrics-port",
                    str(stack.summarize_port),
                ],
                env={
                    "OPENAI_API_KEY": "sk-observe",
                    "DISTCRAWL_LLM__BASE_URL": mock.base_url,
                    "DISTCRAWL_LLM__MODEL": "gpt-4o-mini",
                },
            )
        )
        prom_port = free_port()
        stack.prom_url = f"http://127.0.0.1:{prom_port}"
        config = work / "prometheus.yml"
        config.write_text(json.dumps(live_prometheus_config(tools, stack), indent=1))
        checked = run([tools.promtool, "check", "config", config])
        assert checked.returncode == 0, checked.stdout + checked.stderr
        procs.append(
            _spawn(
                logs,
                "prometheus",
                [
                    tools.prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={work / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
            )
        )
        deadline = time.monotonic() + 60
        _wait_ready(stack, deadline)
        _wait(
            "5 scrapes of every target",
            lambda: (
                min(stack.values('count_over_time(up{job=~"distcrawl-.*"}[1m])'), default=0) >= 5
                and len(stack.values("up == 1")) >= 4
            ),
            deadline,
            stack,
        )
        _wait(
            "pages crawled, LLM calls answered ok and 429",
            lambda: (
                sum(stack.values("distcrawl_crawl_done")) > 0
                and sum(stack.values('distcrawl_llm_requests_total{outcome="ok"}')) > 0
                and sum(stack.values('distcrawl_llm_requests_total{outcome="http_429"}')) > 0
                and len(stack.values("distcrawl_llm_cost_usd_total")) > 0
            ),
            deadline,
            stack,
        )
        _wait(
            "every rule evaluated",
            lambda: all(
                rule["health"] != "unknown"
                for group in http_json(f"{stack.prom_url}/api/v1/rules")["data"]["groups"]
                for rule in group["rules"]
            ),
            deadline,
            stack,
        )
        yield stack
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        for stop in reversed(stopped):
            stop()


def _wait_ready(stack: Stack, deadline: float) -> None:
    def ready() -> bool:
        with urllib.request.urlopen(f"{stack.prom_url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)

    _wait("Prometheus ready", ready, deadline, stack)


# -- 2. promtool's lint on what real workers serve ----------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("role", ["crawl", "summarize"])
def test_worker_metrics_pass_promtool_lint(tools: Tools, stack: Stack, role: str) -> None:
    text = scrape_metrics(stack.crawl_port if role == "crawl" else stack.summarize_port)
    family = "distcrawl_fetches_total" if role == "crawl" else "distcrawl_llm_requests_total"
    assert family in text, text
    assert "distcrawl_redis_used_memory_bytes" in text, text
    proc = run([tools.promtool, "check", "metrics"], input_text=text)
    complaints = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"promtool check metrics: {complaints}"
    assert not complaints, f"promtool check metrics: {complaints}"


def test_metrics_lint_catches_problems(tools: Tools) -> None:
    bad = "# TYPE distcrawl_pages counter\ndistcrawl_pages 3\n"  # no HELP, no _total
    proc = run([tools.promtool, "check", "metrics"], input_text=bad)
    assert proc.returncode != 0, proc
    assert "distcrawl_pages" in proc.stdout + proc.stderr, proc


# -- 3. live: every dashboard query and alert expression on a real Prometheus -------------------


def grafana_expr(expr: str, stack: Stack) -> str:
    """``expr`` as Grafana sends it: the crawl picked, instance = All, intervals resolved."""
    values = {
        "crawl": stack.crawl,
        "instance": ".*",
        "__rate_interval": "20s",
        "__interval": "5s",
        "__range": "1m",
    }

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"unknown variable ${name} in {expr}"
        return values[name]

    return _VAR_REF.sub(substitute, expr)


@pytest.mark.slow
def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    failures = []
    queries = 0
    for panel in panels_of(load_dashboard()):
        for target in panel.get("targets", []):
            expr = grafana_expr(target["expr"], stack)
            queries += 1
            answer = stack.query(expr)
            if answer.get("status") != "success" or not answer["data"]["result"]:
                failures.append(f"{panel['title']!r} {target['refId']}: {expr}\n  -> {answer}")
    assert queries >= 30
    assert not failures, "\n".join(failures) + "\n" + stack.log_tail()


@pytest.mark.slow
def test_dashboard_variables_resolve(stack: Stack) -> None:
    """Each variable's label_values(selector, label) finds values (via the label values API)."""
    found = {}
    for variable in load_dashboard()["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"])
        assert match, variable
        selector = grafana_expr(match.group(1), stack)
        url = f"{stack.prom_url}/api/v1/label/{match.group(2)}/values?" + urllib.parse.urlencode(
            {"match[]": selector}
        )
        found[variable["name"]] = http_json(url)["data"]
    assert stack.crawl in found["crawl"], found
    assert sorted(found["instance"]) == sorted(
        f"127.0.0.1:{port}" for port in (stack.crawl_port, stack.summarize_port)
    ), found


_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})")


@pytest.mark.slow
def test_every_alert_expression_evaluates_on_live_series(tools: Tools, stack: Stack) -> None:
    """An alert that is quiet returns nothing, so each selector it uses must find series."""
    failures = []
    for rule in alert_rules(load_yaml(tools, ALERTS)):
        answer = stack.query(rule["expr"])
        if answer.get("status") != "success":
            failures.append(f"{rule['alert']}: {answer}")
        selectors = _SELECTOR.findall(rule["expr"])
        if not selectors:
            failures.append(f"{rule['alert']}: no metric selector found in {rule['expr']}")
        for name, matchers in selectors:
            if not stack.values(f"count({name}{matchers})"):
                failures.append(f"{rule['alert']}: no series for {name}{matchers}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_rule_groups_are_healthy(tools: Tools, stack: Stack) -> None:
    groups = http_json(f"{stack.prom_url}/api/v1/rules")["data"]["groups"]
    expected = {g["name"]: len(g["rules"]) for g in load_yaml(tools, ALERTS)["groups"]}
    assert {g["name"]: len(g["rules"]) for g in groups} == expected
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", rule
            assert not rule.get("lastError"), rule


def active_targets(stack: Stack, pool: str) -> list[dict[str, Any]]:
    data = http_json(f"{stack.prom_url}/api/v1/targets?state=active")["data"]
    return [t for t in data["activeTargets"] if t["scrapePool"] == pool]


@pytest.mark.slow
def test_compose_relabeling_attaches_crawl(stack: Stack) -> None:
    for job, port in zip(WORKER_JOBS, (stack.crawl_port, stack.summarize_port), strict=True):
        (target,) = active_targets(stack, job)
        assert target["labels"] == {
            "job": job,
            "instance": f"127.0.0.1:{port}",
            "crawl": stack.crawl,
        }, target
        assert target["health"] == "up", target


@pytest.mark.slow
def test_k8s_relabeling_keeps_worker_pods(stack: Stack) -> None:
    """prometheus-k8s.yml's relabel rules, run by Prometheus on pods described as Kubernetes
    discovery describes them: worker pods become distcrawl-* targets on their annotated port,
    with their crawl; other pods are dropped."""
    targets = {t["labels"]["pod"]: t for t in active_targets(stack, "k8s-pods")}
    assert sorted(targets) == ["crawler-0", "summarizer-0"], targets
    expected = {
        "crawler-0": ("distcrawl-crawler", stack.crawl_port, stack.k8s_crawl),
        "summarizer-0": ("distcrawl-summarizer", stack.summarize_port, "default"),
    }
    for pod, (job, port, crawl) in expected.items():
        target = targets[pod]
        assert target["labels"] == {
            "job": job,
            "instance": pod,
            "pod": pod,
            "namespace": "distcrawl",
            "crawl": crawl,
        }, target
        assert target["scrapeUrl"] == f"http://127.0.0.1:{port}/metrics", target
        assert target["health"] == "up", target
    data = http_json(f"{stack.prom_url}/api/v1/targets?state=dropped")["data"]
    dropped = {
        t["discoveredLabels"].get("__meta_kubernetes_pod_name") for t in data["droppedTargets"]
    }
    assert {"redis-0", "crawler-unannotated"} <= dropped, dropped

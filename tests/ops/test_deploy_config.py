"""The deployment files agree with the code: settings they set exist, commands parse with the CLI,
ports line up (process, container, nginx, Prometheus), probes hit real routes, and the dashboard
queries metrics that exist."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import yaml

from cli.main import parser
from gateway.app import create_app
from gateway.observe import METRICS_PATH
from shared import metrics
from shared.settings import PREFIX, Settings
from tests.stack import ROOT
from worker.observe import PATHS as WORKER_PATHS

DEPLOY = ROOT / "deploy"
IMAGE = "agentstream:latest"
# Variables that are not ours but that the service reads (shared/settings.py).
FOREIGN = {"ANTHROPIC_API_KEY", "OTEL_EXPORTER_OTLP_ENDPOINT"}
# Placeholder values for variables whose value comes from a Secret.
FROM_SECRET = {"AGENTSTREAM_REDIS_URL": "redis://redis:6379/0", "ANTHROPIC_API_KEY": "sk-ant-placeholder"}


def gateway_routes() -> set[str]:
    return {r.path for r in create_app(Settings(), "redis://127.0.0.1:1").routes}  # type: ignore[attr-defined]


def check_env(env: dict[str, str]) -> Settings:
    """Every variable is a setting (or one the settings read), and the values parse."""
    for name in env:
        assert name.startswith(PREFIX) or name in FOREIGN, f"{name}: not a setting"
    values = {k: ("" if v.startswith("${") else v) for k, v in env.items()}
    return Settings.from_env(values)  # raises on an unknown AGENTSTREAM_ variable or a bad value


def check_command(command: list[str]) -> str:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts, command
    args = parser().parse_args(command[1:])
    assert args.command in ("gateway", "worker"), command
    return str(args.command)


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def ours(services: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in services.items() if s.get("image") == IMAGE}


def healthcheck_url(test: list[str]) -> tuple[int, str]:
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", " ".join(test))
    assert m, test
    return int(m.group(1)), m.group(2)


def test_compose_services_run_the_cli_with_real_settings_ports_and_probes():
    c = compose()
    services = ours(c["services"])
    kinds = {name: check_command(s["command"]) for name, s in services.items()}
    assert sorted(kinds.values()) == ["gateway", "gateway", "worker", "worker"]
    routes = gateway_routes()
    for name, s in services.items():
        settings = check_env(s["environment"])
        assert s["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert (DEPLOY / s["build"]["context"] / s["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        port, path = healthcheck_url(s["healthcheck"]["test"])
        if kinds[name] == "gateway":
            assert settings.host == "0.0.0.0" and s["expose"] == [str(settings.port)] and port == settings.port
            assert path in routes
        else:
            assert settings.worker_metrics_port and settings.host == "0.0.0.0"
            assert s["expose"] == [str(settings.worker_metrics_port)] and port == settings.worker_metrics_port
            assert path in WORKER_PATHS
            assert int(s["stop_grace_period"].rstrip("s")) > settings.worker_drain_s + 5
        assert settings.redis_url == "redis://redis:6379/0"
    redis = c["services"]["redis"]
    assert redis["image"].startswith("redis:7") and "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    nginx = c["services"]["nginx"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert any(v.startswith("./prometheus.yml:") for v in c["services"]["prometheus"]["volumes"])
    assert any(v.startswith("./grafana/agentstream.json:") for v in c["services"]["grafana"]["volumes"])
    for volume in [v for s in c["services"].values() for v in s.get("volumes", [])]:
        if volume.startswith("./"):
            assert (DEPLOY / volume.split(":")[0]).exists(), volume


def test_nginx_and_prometheus_point_at_the_compose_services_and_ports():
    services = ours(compose()["services"])
    gw = {f"{n}:{s['environment']['AGENTSTREAM_PORT']}" for n, s in services.items() if s["command"][1] == "gateway"}
    wk = {f"{n}:{s['environment']['AGENTSTREAM_WORKER_METRICS_PORT']}" for n, s in services.items()
          if s["command"][1] == "worker"}
    conf = (DEPLOY / "nginx.conf").read_text()
    assert set(re.findall(r"^\s*server ([\w-]+:\d+)", conf, re.M)) == gw
    assert "proxy_buffering off;" in conf and "proxy_pass http://agentstream_gateway;" in conf
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert set(jobs["agentstream-gateway"]["static_configs"][0]["targets"]) == gw
    assert set(jobs["agentstream-worker"]["static_configs"][0]["targets"]) == wk
    assert jobs["agentstream-gateway"]["metrics_path"] == METRICS_PATH  # served by gateway/observe.py
    assert jobs["agentstream-worker"]["metrics_path"] in WORKER_PATHS


def _families() -> set[str]:
    from prometheus_client import REGISTRY

    names = set()
    for fam in REGISTRY.collect():
        if fam.name.startswith("agentstream_"):
            names |= {s.name for s in fam.samples} | {fam.name, fam.name + "_total", fam.name + "_bucket",
                                                          fam.name + "_count", fam.name + "_sum"}
    return names


def test_the_dashboard_queries_only_metrics_that_exist_and_covers_every_family():
    import json

    dash = json.loads((DEPLOY / "grafana" / "agentstream.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"agentstream_\w+", e)}
    known = _families()
    assert used <= known, used - known
    defined = {v._name for v in vars(metrics).values() if hasattr(v, "_name") and hasattr(v, "_type")}
    for family in defined:
        assert any(u.startswith(family) for u in used), f"{family} is on no panel"


def _manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _env(container: dict[str, Any]) -> dict[str, str]:
    out = {}
    for e in container.get("env", []):
        out[e["name"]] = e.get("value", FROM_SECRET.get(e["name"], ""))
        if "valueFrom" in e:
            assert e["valueFrom"]["secretKeyRef"]["name"] == "agentstream"
    return out


def test_kubernetes_manifests_match_the_code():
    docs = _manifests()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    assert set(deployments) == {"agentstream-gateway", "agentstream-worker"}
    routes = gateway_routes()
    for name, d in deployments.items():
        pod = d["spec"]["template"]
        assert pod["metadata"]["labels"] == d["spec"]["selector"]["matchLabels"]
        (c,) = pod["spec"]["containers"]
        assert c["image"] == IMAGE
        kind = check_command(c["command"])
        settings = check_env(_env(c))
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        port = settings.port if kind == "gateway" else settings.worker_metrics_port
        assert port and [p["containerPort"] for p in c["ports"]] == [port]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        for probe in ("readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert get["port"] == port
            assert get["path"] in (routes if kind == "gateway" else set(WORKER_PATHS)), (name, probe)
        if kind == "worker":
            assert pod["spec"]["terminationGracePeriodSeconds"] > settings.worker_drain_s + 5
        pdbs = [p for p in by_kind["PodDisruptionBudget"]
                if p["spec"]["selector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]]
        assert len(pdbs) == 1 and pdbs[0]["spec"]["minAvailable"] < d["spec"]["replicas"]
    svc = next(s for s in by_kind["Service"] if s["metadata"]["name"] == "agentstream-gateway")
    assert svc["spec"]["ports"][0]["targetPort"] == 8000
    assert svc["spec"]["selector"] == deployments["agentstream-gateway"]["spec"]["selector"]["matchLabels"]
    (redis,) = by_kind["StatefulSet"]
    (rc,) = redis["spec"]["template"]["spec"]["containers"]
    assert rc["image"].startswith("redis:7") and rc["command"][rc["command"].index("--appendonly") + 1] == "yes"
    rsvc = next(s for s in by_kind["Service"] if s["metadata"]["name"] == "agentstream-redis")
    assert rsvc["spec"]["ports"][0]["port"] == 6379


def test_dockerfile_builds_the_packages_runs_the_cli_as_non_root_with_a_health_check():
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines() if ln.strip() and not ln.startswith("#")]
    stages = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(stages) == 2 and all("slim" in s for s in stages)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {ln.split()[1] for ln in lines if ln.startswith("COPY ") and "--from" not in ln}
    assert {p.rstrip("*") for p in packages} <= copied
    user = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    final = lines[lines.index(stages[1]):]
    cmd = next(ln for ln in final if ln.startswith("CMD "))
    import json

    assert check_command(json.loads(cmd[4:])) == "gateway"
    health = next(ln for ln in final if ln.startswith("HEALTHCHECK "))
    assert re.search(r"/healthz", health) and "/healthz" in gateway_routes()
    env = dict(re.findall(r"(AGENTSTREAM_\w+)=(\S+)", next(ln for ln in final if ln.startswith("ENV "))))
    settings = check_env(env)
    assert f"EXPOSE {settings.port} 9100" in final
    assert "9100" in str(compose()["x-worker"]["environment"]["AGENTSTREAM_WORKER_METRICS_PORT"])


def test_the_readme_starts_the_deployment_the_way_the_files_are_laid_out():
    readme = (ROOT / "README.md").read_text()
    assert "docker compose -f deploy/compose.yaml up --build" in readme
    assert "docker build -f deploy/Dockerfile -t agentstream:latest ." in readme


def test_the_cluster_and_sentinel_examples_are_valid_settings():
    """deploy/cluster: every process's environment is a topology the settings accept."""
    c = yaml.safe_load((DEPLOY / "cluster" / "compose.yaml").read_text())
    for name in ("gateway", "worker"):
        env = {k: str(v) for k, v in (c["services"][name].get("environment") or c["x-app"]["environment"]).items()}
        assert Settings.from_env(env).redis_cluster_nodes, name
    lines = (DEPLOY / "cluster" / "sentinel.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert Settings.from_env(env).redis_sentinel_service == "mymaster"

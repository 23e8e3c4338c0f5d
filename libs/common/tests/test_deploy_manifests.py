"""The Kubernetes manifests in deploy/k8s: every Deployment probes, bounds and configures its
containers the way the runtime expects, and no consumer can outgrow its partitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bo_common.metrics import PoolCollector
from bo_common.settings import ServiceSettings
from bo_common.topics import DEFAULT_PARTITIONS

K8S = Path(__file__).resolve().parents[3] / "deploy" / "k8s"


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                document["_file"] = path.name
                found.append(document)
    return found


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


DEPLOYMENTS = of_kind("Deployment")
NAMES = [d["metadata"]["name"] for d in DEPLOYMENTS]


def test_every_service_process_has_a_deployment() -> None:
    assert set(NAMES) == {
        "gateway",
        "gateway-worker",
        "settlement",
        "ledger",
        "compliance-monitor",
        "audit",
    }


def test_kustomization_lists_every_file_but_the_jobs() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "jobs.yaml"}
    assert listed == manifests


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=NAMES)
def test_every_container_has_probes_resources_and_its_port(deployment: dict[str, Any]) -> None:
    spec = deployment["spec"]["template"]["spec"]
    for container in spec["containers"]:
        port = container["ports"][0]["containerPort"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] == "http"
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound])
        env = {e["name"]: e for e in container["env"]}
        prefix = next(name.removesuffix("_PORT") for name in env if name.endswith("_PORT"))
        assert env[f"{prefix}_PORT"]["value"] == str(port)
        assert env[f"{prefix}_HOST"]["value"] == "0.0.0.0"
        # Credentials come from a Secret, never inline.
        assert "secretKeyRef" in env[f"{prefix}_DATABASE_URL"]["valueFrom"]
        assert {"configMapRef": {"name": "backoffice-config"}} in container["envFrom"]
    # Long enough for the runtime's own drain after uvicorn's 20 s for open requests.
    assert spec["terminationGracePeriodSeconds"] > ServiceSettings().shutdown_timeout_s + 20


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=NAMES)
def test_a_consumer_never_scales_past_its_partitions(deployment: dict[str, Any]) -> None:
    name = deployment["metadata"]["name"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    role = next(e["value"] for e in container["env"] if e["name"].endswith("_ROLE"))
    autoscaler = next(
        h for h in of_kind("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name
    )
    assert autoscaler["spec"]["minReplicas"] == deployment["spec"]["replicas"]
    if role != "api":
        assert autoscaler["spec"]["maxReplicas"] <= DEFAULT_PARTITIONS
    services = [s for s in of_kind("Service") if s["metadata"]["name"] == name]
    assert services and services[0]["spec"]["selector"] == {"app.kubernetes.io/name": name}
    budgets = [p for p in of_kind("PodDisruptionBudget") if p["metadata"]["name"] == name]
    assert budgets and budgets[0]["spec"]["maxUnavailable"] == 1


def test_the_topics_job_creates_the_partitions_the_autoscalers_assume() -> None:
    jobs = {j["metadata"]["name"]: j for j in of_kind("Job")}
    command = jobs["backoffice-topics"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["bo", "topics", "create"]
    assert int(command[command.index("--partitions") + 1]) == DEFAULT_PARTITIONS
    migrate = jobs["backoffice-migrate"]["spec"]["template"]["spec"]["containers"][0]
    assert migrate["command"] == ["bo", "migrate"]


DEPLOY = K8S.parent


def exposed_metric_names() -> set[str]:
    from prometheus_client import REGISTRY

    import bo_common.metrics  # noqa: F401 (registers the metrics)

    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):
        for family in collector.collect():
            names.update(sample.name for sample in family.samples)
            names.add(family.name)
    # Families without a sample yet (labelled metrics never observed) still count.
    for name_list in REGISTRY._collector_to_names.values():
        names.update(name_list)
    # Registered by each process once its engine exists.
    names.update(family.name for family in PoolCollector("any", lambda: None).collect())
    return names


def test_the_dashboard_and_the_alerts_read_metrics_that_exist() -> None:
    import json
    import re

    exprs = [
        target["expr"]
        for panel in json.loads(
            (DEPLOY / "grafana" / "dashboards" / "backoffice.json").read_text()
        )["panels"]
        for target in panel.get("targets", [])
    ]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\bbo_[a-z_]+", expr)}
    assert used, "no bo_ metric referenced"
    missing = used - exposed_metric_names()
    assert not missing, missing


def test_prometheus_loads_the_alert_rules_and_scrapes_every_process() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert "gateway-worker:8006" in targets
    assert len(targets) == 7

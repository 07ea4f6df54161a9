"""skaffold.yaml parses, matches the chart, and its profiles produce a sound deploy order."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from tests.charts import chartlib
from tests.charts.chartlib import REPO, SERVICES

SKAFFOLD = REPO / "skaffold.yaml"
OPERATOR_CHART = "oci://quay.io/strimzi-helm/strimzi-kafka-operator"


@pytest.fixture(scope="module")
def skaffold() -> dict:
    return yaml.safe_load(SKAFFOLD.read_text())


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def apply_patches(config: dict, patches: list[dict]) -> dict:
    """The JSON-patch subset skaffold profiles use (add, remove, replace, test)."""
    config = copy.deepcopy(config)
    for patch in patches:
        op, parts = patch.get("op", "replace"), _pointer(patch["path"])
        parent = config
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op == "add":
                assert index <= len(parent), f"{patch['path']}: index out of range"
                parent.insert(index, copy.deepcopy(patch["value"]))
            elif op == "remove":
                parent.pop(index)
            elif op == "replace":
                parent[index] = copy.deepcopy(patch["value"])
            elif op == "test":
                assert parent[index] == patch["value"], f"test failed at {patch['path']}"
        else:
            if op in ("add", "replace"):
                parent[last] = copy.deepcopy(patch["value"])
            elif op == "remove":
                del parent[last]
            elif op == "test":
                assert parent[last] == patch["value"], f"test failed at {patch['path']}"
        assert op in ("add", "remove", "replace", "test"), op
    return config


def with_profiles(config: dict, *names: str) -> dict:
    profiles = {p["name"]: p for p in config.get("profiles", [])}
    for name in names:
        config = apply_patches(config, profiles[name]["patches"])
    return config


def releases(config: dict) -> list[dict]:
    return config["deploy"]["helm"]["releases"]


def chart_release(config: dict) -> dict:
    found = [r for r in releases(config) if r.get("chartPath") == "charts/gostream"]
    assert len(found) == 1
    return found[0]


def test_header(skaffold):
    assert skaffold["apiVersion"] == "skaffold/v4beta13"
    assert skaffold["kind"] == "Config"


def test_one_artifact_per_image(skaffold):
    artifacts = {a["image"]: a for a in skaffold["build"]["artifacts"]}
    assert set(artifacts) == {f"gostream-{s}" for s in SERVICES}
    for svc in SERVICES:
        artifact = artifacts[f"gostream-{svc}"]
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == f"images/{svc}/Dockerfile"
    assert skaffold["build"]["local"]["push"] is False


def test_artifact_names_match_the_chart_image_values(skaffold):
    values = yaml.safe_load((chartlib.CHART / "values.yaml").read_text())
    templates = chart_release(skaffold)["setValueTemplates"]
    for svc in SERVICES:
        image = f"gostream-{svc}"
        assert values[svc]["image"]["repository"] == image
        var = image.replace("-", "_")
        assert templates[f"{svc}.image.repository"] == f"{{{{.IMAGE_REPO_{var}}}}}"
        assert templates[f"{svc}.image.tag"] == f"{{{{.IMAGE_TAG_{var}}}}}"
    assert len(templates) == 2 * len(SERVICES)


def test_operator_first_then_the_chart(skaffold):
    first, second = releases(skaffold)
    assert first["remoteChart"] == OPERATOR_CHART
    assert first["version"] == "1.2.0"
    assert first.get("wait") is True, "the chart's Kafka resources need the operator running"
    assert first["namespace"] == second["namespace"], "the operator watches its own namespace by default"
    assert second["chartPath"] == "charts/gostream"
    for path in second["valuesFiles"]:
        assert (REPO / path).is_file(), path


def test_skaffold_values_render_the_forwarded_services(skaffold, helm):
    """Render the chart as skaffold would (release name, values files, image templates filled)."""
    release = chart_release(skaffold)
    sets = [
        f"{key}={'gostream-x' if 'repository' in key else 'abc123'}" for key in release["setValueTemplates"]
    ]
    docs = helm.template(*(REPO / p for p in release["valuesFiles"]), sets=sets, release=release["name"])
    services = {s["metadata"]["name"]: s for s in chartlib.kind_of(docs, "Service")}
    forwards = skaffold["portForward"]
    assert {(f["resourceName"], f["port"]) for f in forwards} == {("gostream-frontend", 8080), ("gostream-questdb", 9000)}
    for forward in forwards:
        assert forward["resourceType"] == "service"
        assert forward["namespace"] == release["namespace"]
        assert forward["port"] in {p["port"] for p in services[forward["resourceName"]]["spec"]["ports"]}
    deploy = chartlib.by_name(docs, "Deployment", "gostream-api")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "gostream-x:abc123"


def test_monitoring_profile(skaffold, helm, crd_schemas):
    config = with_profiles(skaffold, "monitoring")
    names = [r["name"] for r in releases(config)]
    assert names.index("strimzi") < names.index("monitoring") < names.index("gostream"), names
    kps = next(r for r in releases(config) if r["name"] == "monitoring")
    assert kps["remoteChart"].endswith("/kube-prometheus-stack")
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(kps["version"])), "pin kube-prometheus-stack"
    for path in kps["valuesFiles"]:
        assert (REPO / path).is_file(), path
    release = chart_release(config)
    docs = helm.template(*(REPO / p for p in release["valuesFiles"]), release=release["name"])
    monitors = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {d["kind"] for d in monitors} == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    for doc in monitors:
        assert doc["metadata"]["labels"]["release"] == kps["name"]
        crd_schemas.validate(doc)
    assert any(f["namespace"] == "monitoring" for f in config["portForward"])


@pytest.mark.parametrize("profiles", [("no-operator",), ("monitoring", "no-operator")])
def test_no_operator_profile(skaffold, profiles):
    config = with_profiles(skaffold, *profiles)
    assert OPERATOR_CHART not in [r.get("remoteChart") for r in releases(config)]
    assert releases(config)[-1]["chartPath"] == "charts/gostream"


def test_profiles_are_the_documented_ones(skaffold):
    names = {p["name"] for p in skaffold["profiles"]}
    assert names == {"monitoring", "no-operator", "external-kafka"}
    readme = (REPO / "k8s-dev" / "README.md").read_text()
    for name in names:
        assert f"-p {name}" in readme or f"--profile {name}" in readme


def test_k8s_dev_readme_gives_the_commands():
    readme = (REPO / "k8s-dev" / "README.md").read_text()
    for command in (
        "kind create cluster --config k8s-dev/kind-config.yaml",
        "skaffold dev",
        "kubectl -n gostream port-forward svc/gostream-frontend 8080:8080",
        "helm install strimzi oci://quay.io/strimzi-helm/strimzi-kafka-operator --version 1.2.0",
    ):
        assert command in readme, command
    kind = yaml.safe_load((REPO / "k8s-dev" / "kind-config.yaml").read_text())
    assert kind["kind"] == "Cluster" and kind["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    image = kind["nodes"][0]["image"]
    major, minor = (int(x) for x in re.match(r"kindest/node:v(\d+)\.(\d+)\.", image).groups())
    assert (major, minor) >= (1, 30), image


def test_dockerfiles_exist():
    missing = [f"images/{s}/Dockerfile" for s in SERVICES if not (REPO / "images" / s / "Dockerfile").is_file()]
    assert not missing, f"skaffold builds from {missing}, which do not exist"

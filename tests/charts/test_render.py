"""helm lint --strict and offline schema validation of every chart variant."""

from __future__ import annotations

import pytest

from tests.charts import chartlib
from tests.charts.chartlib import KUBE_VERSIONS, VARIANTS

CUSTOM_GROUPS = ("kafka.strimzi.io/", "monitoring.coreos.com/", "gateway.networking.k8s.io/")
GATEWAY = "gateway.networking.k8s.io/"


def test_every_ci_values_file_is_a_variant():
    ci_files = sorted(p.name for p in (chartlib.CHART / "ci").glob("*.yaml"))
    assert ci_files, "charts/gostream/ci/ holds no values files"
    assert all(name.endswith("-values.yaml") for name in ci_files), ci_files
    assert {"defaults", "external-kafka", "monitoring", "replicas"} <= set(VARIANTS)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lint_strict(helm, variant):
    args = ["lint", "--strict", str(chartlib.CHART), "--namespace", chartlib.NAMESPACE, "--kube-version", chartlib.MIN_KUBE]
    for path in VARIANTS[variant]:
        args += ["-f", str(path)]
    result = helm.run(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_lint_rejects_kubernetes_older_than_1_30(helm):
    result = helm.run("template", "x", str(chartlib.CHART), "--kube-version", "1.29.9", check=False)
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr or "1.30" in result.stderr, result.stderr


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_builtin_objects_match_kubernetes_schemas(render, variant, kube_version):
    docs = render(variant, kube_version)
    builtin = [d for d in docs if not d["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert builtin, "nothing rendered"
    failures = []
    for doc in builtin:
        try:
            chartlib.validate_builtin(doc, kube_version)
        except Exception as exc:  # ValidationError or SchemaNotFoundError: both are failures here
            path = "/".join(map(str, getattr(exc, "path", []) or []))
            failures.append(f"{doc['kind']}/{doc['metadata']['name']} at /{path}: {getattr(exc, 'message', exc)}")
    assert not failures, f"against Kubernetes {kube_version}:\n" + "\n".join(failures)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_custom_resources_match_crds(render, crd_schemas, variant):
    docs = render(variant)
    custom = [d for d in docs if d["apiVersion"].startswith(CUSTOM_GROUPS)]
    for doc in custom:
        if doc["apiVersion"].startswith(GATEWAY):
            chartlib.validate_httproute(doc, crd_schemas)
        else:
            crd_schemas.validate(doc)
    kinds = {d["kind"] for d in custom}
    strimzi = any(d["kind"] == "Kafka" for d in docs)
    if not variant.startswith("external-kafka"):
        assert {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"} <= kinds
    if "monitoring" in variant:
        assert {"ServiceMonitor", "PrometheusRule"} <= kinds
        assert ("PodMonitor" in kinds) == strimzi
    if variant == "ingress":
        assert "HTTPRoute" in kinds


def test_crd_check_catches_a_misspelt_field(render, crd_schemas):
    """The CRD validation is strict: a field the CRD does not define is an error, not pruned."""
    kafka = chartlib.by_name(render("defaults"), "Kafka", chartlib.RELEASE)
    broken = {**kafka, "spec": {**kafka["spec"], "kafkaExporter": {"groupRegexp": ".*"}}}
    with pytest.raises(AssertionError, match="groupRegexp"):
        crd_schemas.validate(broken)


def test_kafkauser_check_catches_mistakes(render, crd_schemas):
    """KafkaUsers are checked against chartlib's subset of Strimzi's CRD (not in the shared
    folder): a misspelt field, an unknown operation or a missing resource type is refused."""
    user = chartlib.kind_of(render("defaults"), "KafkaUser")[0]
    crd_schemas.validate(user)
    acl = user["spec"]["authorization"]["acls"][0]
    for broken_acl, what in [({**acl, "operation": ["Read"]}, "operation"),
                             ({**acl, "operations": ["Reads"]}, "Reads"),
                             ({**acl, "resource": {"name": "trades"}}, "type")]:
        broken = {**user, "spec": {**user["spec"], "authorization": {"type": "simple", "acls": [broken_acl]}}}
        with pytest.raises(AssertionError, match=what):
            crd_schemas.validate(broken)


def test_httproute_check_catches_mistakes(render, crd_schemas):
    route = chartlib.kind_of(render("ingress"), "HTTPRoute")[0]
    assert chartlib.validate_httproute(route, crd_schemas) in ("crd", "structure")
    rules = route["spec"]["rules"]
    misspelt = {**route, "spec": {**route["spec"], "parentRef": route["spec"]["parentRefs"]}}
    bad_filter = {**route, "spec": {**route["spec"], "rules": [{**rules[0], "filters": [
        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefix", "replacePrefixMatch": "/"}}}]}]}}
    bad_port = {**route, "spec": {**route["spec"], "rules": [{**rules[1], "backendRefs": [{"name": "x", "port": 0}]}]}}
    for broken, expected in ((misspelt, "parentRef"), (bad_filter, "ReplacePrefix"), (bad_port, "backendRefs")):
        with pytest.raises(AssertionError, match=expected):
            chartlib.validate_httproute(broken, crd_schemas)


def test_kubernetes_check_catches_a_misspelt_field(render):
    deployment = chartlib.by_name(render("defaults"), "Deployment", "gostream-api")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(Exception, match="replica"):
        chartlib.validate_builtin(broken, chartlib.MIN_KUBE)


def test_missing_crd_folder_fails_loudly(monkeypatch, tmp_path):
    monkeypatch.setenv("GOSTREAM_CRD_SCHEMAS", str(tmp_path / "nowhere"))
    with pytest.raises(pytest.fail.Exception, match="GOSTREAM_CRD_SCHEMAS"):
        chartlib.crd_schemas()


def test_missing_helm_fails_with_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setattr(chartlib, "HELM_PATH", tmp_path / "helm")
    with pytest.raises(pytest.fail.Exception, match="make chart-tools"):
        chartlib.helm()

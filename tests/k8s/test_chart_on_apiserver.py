"""The chart on a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
no kubelet): `helm install` for the defaults and every ci/*-values.yaml into a namespace that
enforces the restricted Pod Security level, Pods created by the real controllers, `helm
upgrade` with changed values, and `helm uninstall` leaving nothing of the release behind."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.k8s import checks, cluster

CHART = cluster.REPO / "charts" / "gostream"
RELEASE = "gostream"


def _variants() -> dict[str, list]:
    variants: dict[str, list] = {"defaults": []}
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        if yaml.safe_load(path.read_text()) in (None, {}):
            continue  # the chart's defaults, installed above
        variants[path.name.removesuffix("-values.yaml")] = [path]
    # what `skaffold dev` installs on kind, with and without the monitoring overlay
    dev = cluster.REPO / "k8s-dev"
    variants["k8s-dev"] = [dev / "values-dev.yaml"]
    variants["k8s-dev-monitoring"] = [dev / "values-dev.yaml", dev / "values-monitoring.yaml"]
    return variants


VARIANTS = _variants()

# The upgrade changes the services' settings (every pod template changes), scales the API
# (a PodDisruptionBudget appears) and annotates QuestDB's pods.
UPGRADE_SET = ["--set", "config.logLevel=ERROR", "--set", "api.replicaCount=3",
               "--set", "questdb.podAnnotations.gostream\\.io/upgraded=yes"]


def _no_pod_security_warnings(result: subprocess.CompletedProcess) -> None:
    # the namespace also warns on the restricted level: the API returns a warning for a
    # Deployment or StatefulSet whose pods would be refused, and helm prints it
    bad = [line for line in result.stderr.splitlines() if "PodSecurity" in line]
    assert not bad, "the API server warned about the pod templates:\n" + "\n".join(bad)


def _manifest_workloads(helm, namespace: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"Deployment": set(), "StatefulSet": set()}
    manifest = helm.run("get", "manifest", RELEASE, "-n", namespace).stdout
    for doc in yaml.safe_load_all(manifest):
        if doc and doc.get("kind") in out:
            out[doc["kind"]].add(doc["metadata"]["name"])
    return out


def _by_component(kube, namespace: str, component: str) -> dict:
    items = kube.items(f"/apis/apps/v1/namespaces/{namespace}/deployments",
                       labelSelector=f"app.kubernetes.io/component={component}")
    assert len(items) == 1, f"expected one {component} Deployment, found {[d['metadata']['name'] for d in items]}"
    return items[0]


def test_control_plane_reports_its_real_version(kube):
    version = kube.get("/version")
    assert version["gitVersion"] == cluster.KUBE_VERSION, version
    assert version["gitTreeState"] == "clean", version
    for name in ("kube-apiserver", "kube-controller-manager"):
        out = subprocess.run([str(cluster.binary(name)), "--version"], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == f"Kubernetes {cluster.KUBE_VERSION}", out.stdout
    out = subprocess.run([str(cluster.binary("etcd")), "--version"], capture_output=True, text=True, check=True)
    assert f"etcd Version: {cluster.ETCD_VERSION}" in out.stdout, out.stdout


def test_crds_are_served(kube):
    # a custom resource of each CRD group is listable: the chart's Kafka, topics and monitors
    # are validated against these schemas by the API server itself
    for path in ("/apis/kafka.strimzi.io/v1/kafkas", "/apis/kafka.strimzi.io/v1/kafkanodepools",
                 "/apis/kafka.strimzi.io/v1/kafkatopics", "/apis/kafka.strimzi.io/v1/kafkausers",
                 "/apis/monitoring.coreos.com/v1/servicemonitors",
                 "/apis/monitoring.coreos.com/v1/podmonitors", "/apis/monitoring.coreos.com/v1/prometheusrules"):
        assert kube.get(path)["items"] == []


def test_a_refused_pod_is_detected(kube):
    """The check used below does catch a workload whose pods the restricted level refuses."""
    namespace = "psa-control"
    checks.restricted_namespace(kube, namespace)
    try:
        pod_spec = {"containers": [{"name": "c", "image": "registry.invalid/plain:1"}]}
        deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "plain"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "plain"}},
                     "template": {"metadata": {"labels": {"app": "plain"}}, "spec": pod_spec}},
        }
        kube.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment)
        with pytest.raises(checks.NotAdmitted, match="violates PodSecurity"):
            checks.wait_workloads_admitted(kube, namespace, timeout=60)
        with pytest.raises(checks.NotAdmitted, match="violates PodSecurity"):
            checks.dry_run_pod(kube, namespace, "plain", pod_spec)
    finally:
        kube.delete(f"/api/v1/namespaces/{namespace}")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_install_upgrade_uninstall(variant, kube, helm):
    namespace = f"chart-{variant}"
    values = [arg for path in VARIANTS[variant] for arg in ("-f", str(path))]
    checks.restricted_namespace(kube, namespace)
    try:
        # install: every Deployment and StatefulSet of the release gets its pods
        result = helm.run("install", RELEASE, str(CHART), "-n", namespace, *values)
        _no_pod_security_warnings(result)
        rendered = _manifest_workloads(helm, namespace)
        assert rendered["Deployment"] and rendered["StatefulSet"], rendered
        installed = checks.wait_workloads_admitted(kube, namespace)
        assert set(installed.deployments) == rendered["Deployment"]
        assert set(installed.statefulsets) == rendered["StatefulSet"]
        print(f"{variant}: installed {installed}")
        # the `helm test` pod (a hook, so not created on install) is admitted as well
        for doc in yaml.safe_load_all(helm.run("get", "hooks", RELEASE, "-n", namespace).stdout):
            if doc and doc.get("kind") == "Pod":
                checks.dry_run_pod(kube, namespace, doc["metadata"]["name"], doc["spec"], doc["metadata"].get("labels"))

        # upgrade with changed values: new ReplicaSets whose pods are admitted too
        api_before = _by_component(kube, namespace, "api")
        result = helm.run("upgrade", RELEASE, str(CHART), "-n", namespace, *values, *UPGRADE_SET)
        _no_pod_security_warnings(result)
        history = json.loads(helm.run("history", RELEASE, "-n", namespace, "-o", "json").stdout)
        assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")], history
        upgraded = checks.wait_workloads_admitted(kube, namespace)
        print(f"{variant}: upgraded {upgraded}")
        api = _by_component(kube, namespace, "api")
        assert api["spec"]["replicas"] == 3
        assert api["metadata"]["annotations"][checks.REVISION] != api_before["metadata"]["annotations"][checks.REVISION]
        assert upgraded.deployments[api["metadata"]["name"]] >= 1
        # without a kubelet an OrderedReady StatefulSet never rolls (pod 0 is never Ready), so its
        # new template is put to the API server directly
        checks.dry_run_templates(kube, namespace)

        # uninstall: nothing of the release stays, except the QuestDB data claims that the
        # StatefulSet created (Kubernetes keeps them by default: the data outlives the release)
        helm.run("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "2m")
        kept = {f"/api/v1/persistentvolumeclaims/{claim}" for claim in installed.claims | upgraded.claims}
        state: dict = {}

        def only_kept() -> bool:
            state["left"] = checks.leftovers(kube, namespace)
            return set(state["left"]) == kept

        cluster.wait_for(f"namespace {namespace} to hold only {sorted(kept)}", only_kept, 90, 1,
                         detail=lambda: state.get("left"))
        print(f"{variant}: after uninstall only the claims {sorted(kept)} are left")
        assert checks.cluster_leftovers(kube, RELEASE) == []
        assert helm.run("list", "-n", namespace, "-a", "-q").stdout.strip() == ""
        for claim in installed.claims | upgraded.claims:
            kube.delete(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
        cluster.wait_for("the claims to be deleted", lambda: checks.leftovers(kube, namespace) == [], 60, 1)
    finally:
        try:
            kube.delete(f"/api/v1/namespaces/{namespace}")
        except cluster.ApiError:
            pass

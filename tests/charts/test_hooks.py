"""The operator's hooks (templates/_workload.tpl and QuestDB's StatefulSet): each one rendered
where it belongs, on every component, and the rollout and shutdown settings."""

from __future__ import annotations

import pytest

from tests.charts import chartlib
from tests.charts.chartlib import RELEASE, SERVICES

COMPONENTS = (*SERVICES, "questdb")
DIGEST = "sha256:" + "1" * 64


def _workload(docs: list[dict], component: str) -> dict:
    kind = "StatefulSet" if component == "questdb" else "Deployment"
    return chartlib.by_name(docs, kind, f"{RELEASE}-{component}")


def _pod(docs: list[dict], component: str) -> dict:
    return _workload(docs, component)["spec"]["template"]["spec"]


def _main(pod: dict, component: str) -> dict:
    return next(c for c in pod["containers"] if c["name"] == component)


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_hook_reaches_every_component(render, component):
    docs = render("hooks")
    pod = _pod(docs, component)
    main = _main(pod, component)
    # scheduling: the spread constraint got the component's own pods as its selector
    spread = pod["topologySpreadConstraints"]
    assert [(c["topologyKey"], c["whenUnsatisfiable"]) for c in spread] == [("topology.kubernetes.io/zone", "ScheduleAnyway")]
    assert spread[0]["labelSelector"] == {"matchLabels": _workload(docs, component)["spec"]["selector"]["matchLabels"]}
    # containers: the init container before, the sidecar after the service's own
    assert [c["name"] for c in pod["initContainers"]] == ["wait-for-network"]
    assert [c["name"] for c in pod["containers"]] == [component, "log-shipper"]
    # volumes and mounts: the chart's first, the operator's added
    assert "extra-config" in {v["name"] for v in pod["volumes"]}
    mounts = [(m["name"], m["mountPath"]) for m in main["volumeMounts"]]
    assert ("extra-config", "/etc/gostream-extra") in mounts and ("tmp", "/tmp") in mounts
    # environment: the chart's settings first, the operator's after them
    assert main["envFrom"][-1] == {"secretRef": {"name": "gostream-extra-env", "optional": True}}
    assert main["env"][-1] == {"name": "EXTRA_SETTING", "value": "on"}
    if component != "questdb":
        assert main["envFrom"][0] == {"configMapRef": {"name": f"{RELEASE}-{component}"}}
    # the Service (QuestDB: the ClusterIP one, not the headless one)
    service = chartlib.by_name(docs, "Service", f"{RELEASE}-{component}")
    assert service["metadata"]["annotations"] == {"example.com/owner": "market-data"}


@pytest.mark.parametrize("component", SERVICES)
def test_grace_period_prestop_and_the_drain_budget(render, component):
    hooks, defaults = _pod(render("hooks"), component), _pod(render("defaults"), component)
    # hooks: 45 s grace, 10 s preStop sleep: 33 s for the service's own shutdown
    assert hooks["terminationGracePeriodSeconds"] == 45
    assert _main(hooks, component)["lifecycle"] == {"preStop": {"sleep": {"seconds": 10}}}
    assert _env(_main(hooks, component))["SHUTDOWN_TIMEOUT_S"] == "33"
    # defaults: the api and the frontend, behind Services, wait 5 s for the endpoints to drop them
    prestop = 5 if component in ("api", "frontend") else 0
    assert defaults["terminationGracePeriodSeconds"] == 30
    assert _env(_main(defaults, component))["SHUTDOWN_TIMEOUT_S"] == str(30 - prestop - 2)
    assert ("lifecycle" in _main(defaults, component)) == bool(prestop)


def test_questdb_grace_period(render):
    assert _pod(render("defaults"), "questdb")["terminationGracePeriodSeconds"] == 60
    hooks = _pod(render("hooks"), "questdb")
    assert hooks["terminationGracePeriodSeconds"] == 90
    assert "lifecycle" not in _main(hooks, "questdb"), "preStopSleepSeconds 0: no hook"


@pytest.mark.parametrize("variant", sorted(chartlib.VARIANTS))
def test_the_producer_never_overlaps_itself(render, variant):
    """Recreate: an upgrade stops the old producer before the new one starts; the schema keeps
    replicaCount at 0 or 1 (tests/charts/test_values_schema.py)."""
    docs = render(variant)
    for svc in SERVICES:
        strategy = _workload(docs, svc)["spec"]["strategy"]
        assert strategy == ({"type": "Recreate"} if svc == "producer" else {"type": "RollingUpdate"}), (svc, strategy)
    assert _workload(docs, "producer")["spec"]["replicas"] <= 1


def test_a_grace_period_without_time_to_drain_is_refused(helm):
    result = helm.run("template", "x", str(chartlib.CHART), "--kube-version", chartlib.MIN_KUBE,
                      "--set", "api.terminationGracePeriodSeconds=12", "--set", "api.preStopSleepSeconds=10", check=False)
    assert result.returncode != 0
    assert "api: terminationGracePeriodSeconds (12) must exceed preStopSleepSeconds (10) by at least 5 s" in result.stderr


def test_images_registry_digest_and_pull_policy(render):
    hooks, defaults = render("hooks"), render("defaults")

    def image(docs, component):
        main = _main(_pod(docs, component), component)
        return main["image"], main["imagePullPolicy"]

    # its own registry and a digest (the tag is then left out); global's pull policy
    assert image(hooks, "producer") == (f"ghcr.io/acme/gostream-producer@{DIGEST}", "Always")
    # global's registry, its own pull policy
    assert image(hooks, "consumer") == ("mirror.example.com/gostream-consumer:0.1.0", "IfNotPresent")
    assert image(hooks, "api") == ("mirror.example.com/gostream-api:0.1.0", "Always")
    # QuestDB's image honours global.imageRegistry and global.imagePullPolicy too
    assert image(hooks, "questdb") == ("mirror.example.com/questdb/questdb:9.3.4", "Always")
    assert image(defaults, "questdb") == ("questdb/questdb:9.3.4", "IfNotPresent")
    # the operator's sidecar is left as given
    sidecar = _pod(hooks, "api")["containers"][1]
    assert sidecar["image"].startswith("mirror.example.com/tools/log-shipper:2.1@sha256:")


def test_questdb_on_an_existing_claim(render):
    sts = _workload(render("hooks"), "questdb")
    assert "volumeClaimTemplates" not in sts["spec"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "gostream-questdb-data"}}
    mounts = {m["name"]: m["mountPath"] for m in _main(sts["spec"]["template"]["spec"], "questdb")["volumeMounts"]}
    assert mounts["data"] == "/var/lib/questdb"


def test_priority_class_and_own_label_selectors(helm):
    sets = [f"{c}.priorityClassName=market-data-high" for c in COMPONENTS]
    selector = {"matchLabels": {"team": "md"}}
    sets += ["api.topologySpreadConstraints[0].maxSkew=2", "api.topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
             "api.topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule",
             "api.topologySpreadConstraints[0].labelSelector.matchLabels.team=md"]
    docs = helm.template(sets=sets)
    for component in COMPONENTS:
        assert _pod(docs, component)["priorityClassName"] == "market-data-high", component
        assert "topologySpreadConstraints" not in _pod(docs, component) or component == "api"
    assert _pod(docs, "api")["topologySpreadConstraints"][0]["labelSelector"] == selector, "a given selector is kept"
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            chartlib.validate_builtin(doc, chartlib.MIN_KUBE)


def test_hooks_off_by_default(render):
    docs = render("defaults")
    for component in COMPONENTS:
        pod = _pod(docs, component)
        assert not {"initContainers", "priorityClassName", "topologySpreadConstraints"} & set(pod), component
        assert len(pod["containers"]) == 1
        assert "annotations" not in chartlib.by_name(docs, "Service", f"{RELEASE}-{component}")["metadata"]

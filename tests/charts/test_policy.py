"""Policy checks over the rendered objects of every variant."""

from __future__ import annotations

import pytest

from tests.charts import chartlib
from tests.charts.chartlib import NAMESPACE, RELEASE, SERVICES, VARIANTS, Endpoint, flow_allowed

REQUIRED_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
)


def _resolved(tpl: chartlib.PodTemplate, container: dict, key: str):
    """A security setting from the container, else from the pod."""
    value = (container.get("securityContext") or {}).get(key)
    return value if value is not None else (tpl.spec.get("securityContext") or {}).get(key)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_containers_are_probed_sized_and_restricted(render, variant):
    templates = list(chartlib.pod_templates(render(variant)))
    assert templates
    problems = []
    for tpl in templates:
        if tpl.spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{tpl.name}: automountServiceAccountToken is not false")
        if (tpl.spec.get("securityContext") or {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{tpl.name}: pod seccompProfile is not RuntimeDefault")
        if tpl.spec.get("hostNetwork") or tpl.spec.get("hostPID") or tpl.spec.get("hostIPC"):
            problems.append(f"{tpl.name}: uses host namespaces")
        init = {c["name"] for c in tpl.spec.get("initContainers") or [] if c.get("restartPolicy") != "Always"}
        for c in tpl.containers():
            where = f"{tpl.name}/{c['name']}"
            # A `helm test` pod runs once and exits, and so does an init container (the API
            # refuses probes on one that is not a sidecar): probes make no sense there.
            if not tpl.hook and c["name"] not in init:
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if probe not in c:
                        problems.append(f"{where}: no {probe}")
            res = c.get("resources") or {}
            if not {"cpu", "memory"} <= set(res.get("requests") or {}):
                problems.append(f"{where}: cpu/memory requests missing")
            if "memory" not in (res.get("limits") or {}):
                problems.append(f"{where}: memory limit missing")
            sc = c.get("securityContext") or {}
            if _resolved(tpl, c, "runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            uid = _resolved(tpl, c, "runAsUser")
            if not isinstance(uid, int) or uid == 0:
                problems.append(f"{where}: runAsUser {uid!r} is not a numeric non-root uid")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where}: capabilities not dropped")
            if (sc.get("capabilities") or {}).get("add"):
                problems.append(f"{where}: adds capabilities")
            seccomp = (sc.get("seccompProfile") or (tpl.spec.get("securityContext") or {}).get("seccompProfile") or {})
            if seccomp.get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
            mounts = {m["mountPath"] for m in c.get("volumeMounts") or []}
            if "/tmp" not in mounts:
                problems.append(f"{where}: no writable /tmp (read-only root filesystem)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_probes_hit_the_health_endpoints(render, variant):
    docs = render(variant)
    for svc in SERVICES:
        tpl = next(chartlib.pod_templates([chartlib.by_name(docs, "Deployment", f"{RELEASE}-{svc}")]))
        c = tpl.spec["containers"][0]
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert c[probe]["httpGet"]["port"] in tpl.ports(), (svc, probe)
    questdb = next(chartlib.pod_templates([chartlib.by_name(docs, "StatefulSet", f"{RELEASE}-questdb")]))
    c = questdb.spec["containers"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/status", "port": "metrics"}
    assert questdb.ports()["metrics"] == 9003


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_pod_is_scrapeable(render, variant):
    docs = render(variant)
    for tpl in chartlib.pod_templates(docs):
        if tpl.hook:
            continue
        ann = tpl.annotations
        assert ann.get("prometheus.io/scrape") == "true", tpl.name
        assert ann.get("prometheus.io/path") == "/metrics", tpl.name
        assert int(ann["prometheus.io/port"]) in tpl.ports().values(), f"{tpl.name}: scrape port is not a container port"
    # Strimzi's pods get the same annotations through the Kafka resource's pod templates.
    for kafka in chartlib.kind_of(docs, "Kafka"):
        spec = kafka["spec"]
        for template in (spec["kafka"]["template"], spec["entityOperator"]["template"], spec.get("kafkaExporter", {}).get("template")):
            if template is not None:
                assert template["pod"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_scrape_annotations_can_be_turned_off(helm):
    docs = helm.template(sets=["metrics.podAnnotations=false"])
    for tpl in chartlib.pod_templates(docs):
        assert "prometheus.io/scrape" not in tpl.annotations, tpl.name


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_service_selects_a_pod_template(render, variant):
    docs = render(variant)
    templates = [t for t in chartlib.pod_templates(docs) if not t.hook]
    for svc in chartlib.kind_of(docs, "Service"):
        selector = svc["spec"].get("selector")
        assert selector, f"Service/{svc['metadata']['name']} has no selector"
        matched = [t for t in templates if all(t.labels.get(k) == v for k, v in selector.items())]
        assert matched, f"Service/{svc['metadata']['name']} selects no pod template"
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for tpl in matched:
                ports = tpl.ports()
                assert target in ports or target in ports.values(), (
                    f"Service/{svc['metadata']['name']} targets port {target!r}, not exposed by {tpl.name}"
                )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_labels(render, variant):
    docs = render(variant)
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        missing = [k for k in REQUIRED_LABELS if k not in labels]
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
    for tpl in chartlib.pod_templates(docs):
        assert tpl.labels.get("app.kubernetes.io/component"), f"{tpl.name}: no component label"
        selector = tpl.owner.get("spec", {}).get("selector", {}).get("matchLabels")
        if selector:
            assert selector["app.kubernetes.io/component"] == tpl.labels["app.kubernetes.io/component"]
    components = {t.labels["app.kubernetes.io/component"] for t in chartlib.pod_templates(docs)}
    assert {*SERVICES, "questdb", "test"} <= components


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_settings_come_from_configmaps_with_checksums(render, variant):
    docs = render(variant)
    for svc in SERVICES:
        deploy = chartlib.by_name(docs, "Deployment", f"{RELEASE}-{svc}")
        tpl = next(chartlib.pod_templates([deploy]))
        # the chart's ConfigMap first; an operator's extraEnvFrom sources may follow
        refs = [e["configMapRef"]["name"] for e in tpl.spec["containers"][0]["envFrom"] if "configMapRef" in e]
        assert refs == [f"{RELEASE}-{svc}"]
        assert "configMapRef" in tpl.spec["containers"][0]["envFrom"][0]
        chartlib.by_name(docs, "ConfigMap", refs[0])
        assert len(tpl.annotations.get("checksum/config", "")) == 64, svc


def test_config_checksum_follows_the_config(helm, render):
    before = chartlib.by_name(render("defaults"), "Deployment", f"{RELEASE}-producer")
    after = chartlib.by_name(helm.template(sets=["config.symbols={BTC-USDT,ETH-USDT}"]), "Deployment", f"{RELEASE}-producer")
    a = before["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = after["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert a != b


def _env(docs, svc) -> dict:
    cm = chartlib.by_name(docs, "ConfigMap", f"{RELEASE}-{svc}")["data"]
    deploy = chartlib.by_name(docs, "Deployment", f"{RELEASE}-{svc}")
    extra = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    return {**cm, **extra}


def test_service_environment(render):
    docs = render("defaults")
    producer, consumer, api, frontend = (_env(docs, s) for s in SERVICES)
    bootstrap = f"{RELEASE}-kafka-bootstrap:9093"  # the TLS + SCRAM listener (test_kafka_security.py)
    assert producer["KAFKA_BOOTSTRAP_SERVERS"] == consumer["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap
    assert producer["OKX_WS_URL"] == "wss://ws.okx.com:8443/ws/v5/business"
    assert producer["OKX_CHANNEL"] == "trades-all"
    assert producer["SYMBOLS"] == "BTC-USDT"
    assert (producer["OKX_INST_TYPES"], producer["INSTRUMENTS_REFRESH_S"], producer["MAX_SYMBOLS_PER_CONNECTION"],
            producer["HISTORY_WINDOW"]) == ("SPOT", "30", "100", "6h")
    assert producer["HEALTH_PORT"] == "9101" and consumer["HEALTH_PORT"] == "9102"
    assert producer["KAFKA_TOPIC"] == consumer["KAFKA_TOPIC"] == "trades"
    assert producer["KAFKA_DLQ_TOPIC"] == consumer["KAFKA_DLQ_TOPIC"] == "trades.dlq"
    assert consumer["KAFKA_GROUP_ID"] == "gostream-consumer"
    assert consumer["QUESTDB_HOST"] == api["QUESTDB_HOST"] == producer["QUESTDB_HOST"] == f"{RELEASE}-questdb"
    assert consumer["QUESTDB_HTTP_PORT"] == producer["QUESTDB_HTTP_PORT"] == "9000" and api["QUESTDB_PG_PORT"] == "8812"
    assert frontend["API_URL"] == f"http://{RELEASE}-api:3000"
    # The consumer and the producer (its ledger) write as the admin, the API reads as the
    # read-only user.
    assert consumer["QUESTDB_USER"] == producer["QUESTDB_USER"] == "admin"
    for writer in (consumer, producer):
        assert writer["QUESTDB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-questdb", "key": "admin-password"}
    questdb_cm = chartlib.by_name(docs, "ConfigMap", f"{RELEASE}-questdb")["data"]
    assert api["QUESTDB_USER"] == questdb_cm["QDB_PG_READONLY_USER"] != "admin"
    assert api["QUESTDB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-questdb", "key": "readonly-password"}
    for svc in SERVICES:
        tpl = next(chartlib.pod_templates([chartlib.by_name(docs, "Deployment", f"{RELEASE}-{svc}")]))
        assert "command" not in tpl.spec["containers"][0], "the images' entrypoints run the services"


def test_questdb(render):
    docs = render("defaults")
    sts = chartlib.by_name(docs, "StatefulSet", f"{RELEASE}-questdb")
    assert sts["spec"]["serviceName"] == f"{RELEASE}-questdb-headless"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "questdb/questdb:9.3.4"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/var/lib/questdb", "/tmp"}
    cm = chartlib.by_name(docs, "ConfigMap", f"{RELEASE}-questdb")["data"]
    assert cm["QDB_METRICS_ENABLED"] == "true"
    assert cm["QDB_TELEMETRY_ENABLED"] == "false"
    assert cm["QDB_PG_READONLY_USER_ENABLED"] == "true"
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert secret_env["QDB_PG_PASSWORD"]["key"] == "admin-password"
    assert secret_env["QDB_PG_READONLY_PASSWORD"]["key"] == "readonly-password"
    headless = chartlib.by_name(docs, "Service", f"{RELEASE}-questdb-headless")
    cluster_ip = chartlib.by_name(docs, "Service", f"{RELEASE}-questdb")
    assert headless["spec"]["clusterIP"] == "None"
    assert cluster_ip["spec"].get("clusterIP") != "None"
    for svc in (headless, cluster_ip):
        assert sorted(p["port"] for p in svc["spec"]["ports"]) == [8812, 9000, 9003]


def test_questdb_passwords_are_generated_never_defaulted(helm, render, repo_root):
    import base64

    import yaml

    values = yaml.safe_load((chartlib.CHART / "values.yaml").read_text())
    assert values["questdb"]["auth"]["adminPassword"] == ""
    assert values["questdb"]["auth"]["readonlyPassword"] == ""
    first = chartlib.by_name(render("defaults"), "Secret", f"{RELEASE}-questdb")["data"]
    second = chartlib.by_name(helm.template(), "Secret", f"{RELEASE}-questdb")["data"]
    for key in ("admin-password", "readonly-password"):
        password = base64.b64decode(first[key]).decode()
        assert len(password) >= 24 and password != "quest"
        assert first[key] != second[key], "a fresh install must get a fresh random password"
    assert first["admin-password"] != first["readonly-password"]
    # The checksum annotation follows the Secret's content.
    sums = {
        chartlib.by_name(render("defaults"), "Deployment", f"{RELEASE}-api")["spec"]["template"]["metadata"]["annotations"]["checksum/secret"],
        chartlib.by_name(helm.template(), "Deployment", f"{RELEASE}-api")["spec"]["template"]["metadata"]["annotations"]["checksum/secret"],
    }
    assert len(sums) == 2


def test_questdb_existing_secret(helm):
    docs = helm.template(sets=["questdb.auth.existingSecret=my-questdb"])
    assert not chartlib.kind_of(docs, "Secret")
    for name in (f"{RELEASE}-producer", f"{RELEASE}-consumer", f"{RELEASE}-api"):
        env = chartlib.by_name(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if e["name"] == "QUESTDB_PASSWORD"} == {"my-questdb"}


def test_strimzi_resources(render):
    docs = render("defaults")
    kafka = chartlib.by_name(docs, "Kafka", RELEASE)
    pool = chartlib.kind_of(docs, "KafkaNodePool")[0]
    assert kafka["apiVersion"] == pool["apiVersion"] == "kafka.strimzi.io/v1"
    assert kafka["spec"]["kafka"]["version"] == "4.3.1"
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == RELEASE
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert pool["spec"]["replicas"] == 1
    assert "annotations" not in kafka["metadata"], "Strimzi 1.x needs no KRaft/node-pool annotations"
    listener = kafka["spec"]["kafka"]["listeners"][0]
    assert (listener["port"], listener["tls"], listener["authentication"]) == (9093, True, {"type": "scram-sha-512"})
    topics = {t["spec"]["topicName"]: t for t in chartlib.kind_of(docs, "KafkaTopic")}
    assert set(topics) == {"trades", "trades.dlq"}
    for topic in topics.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == RELEASE
        assert topic["spec"]["replicas"] == 1
        assert int(topic["spec"]["config"]["retention.ms"]) > 0
    assert topics["trades"]["spec"]["partitions"] == 12
    metrics = kafka["spec"]["kafka"]["metricsConfig"]
    assert metrics["type"] == "jmxPrometheusExporter"
    ref = metrics["valueFrom"]["configMapKeyRef"]
    cm = chartlib.by_name(docs, "ConfigMap", ref["name"])
    import yaml

    rules = yaml.safe_load(cm["data"][ref["key"]])["rules"]
    assert rules and all("pattern" in r for r in rules)
    assert "kafkaExporter" in kafka["spec"]
    assert "topicOperator" in kafka["spec"]["entityOperator"]


def test_replicas_variant(render):
    docs = render("replicas")
    pool = chartlib.kind_of(docs, "KafkaNodePool")[0]
    assert pool["spec"]["replicas"] == 3
    config = chartlib.by_name(docs, "Kafka", RELEASE)["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    assert {t["spec"]["replicas"] for t in chartlib.kind_of(docs, "KafkaTopic")} == {3}
    for svc, replicas in (("consumer", 3), ("api", 2), ("frontend", 2)):
        assert chartlib.by_name(docs, "Deployment", f"{RELEASE}-{svc}")["spec"]["replicas"] == replicas
        chartlib.by_name(docs, "PodDisruptionBudget", f"{RELEASE}-{svc}")
    pdbs = {p["metadata"]["name"] for p in chartlib.kind_of(docs, "PodDisruptionBudget")}
    assert f"{RELEASE}-producer" not in pdbs


def test_external_kafka_variant(render):
    docs = render("external-kafka")
    assert not [d for d in docs if d["apiVersion"].startswith("kafka.strimzi.io/")]
    assert not [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-kafka-metrics")]
    for svc in ("producer", "consumer"):
        cm = chartlib.by_name(docs, "ConfigMap", f"{RELEASE}-{svc}")["data"]
        assert cm["KAFKA_BOOTSTRAP_SERVERS"] == "kafka-0.kafka.data.svc:9092,kafka-1.kafka.data.svc:9092"


def test_monitoring_variant(render):
    docs = render("monitoring")
    monitors = chartlib.kind_of(docs, "ServiceMonitor") + chartlib.kind_of(docs, "PodMonitor") + chartlib.kind_of(docs, "PrometheusRule")
    assert len(monitors) == 4
    for doc in monitors:
        assert doc["metadata"]["labels"]["release"] == "monitoring"
    services = chartlib.kind_of(docs, "Service")
    scraped = set()
    for sm in chartlib.kind_of(docs, "ServiceMonitor"):
        assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        matched = [s for s in services if chartlib.selector_matches(sm["spec"]["selector"], s["metadata"]["labels"])]
        assert matched, f"ServiceMonitor/{sm['metadata']['name']} selects no Service"
        for svc in matched:
            names = {p["name"] for p in svc["spec"]["ports"]}
            assert all(e["port"] in names for e in sm["spec"]["endpoints"]), svc["metadata"]["name"]
            scraped.add(svc["metadata"]["name"])
    assert scraped == {f"{RELEASE}-{s}" for s in (*SERVICES, "questdb")}, "each target once (not the headless Service)"
    pm = chartlib.kind_of(docs, "PodMonitor")[0]
    broker = {"strimzi.io/cluster": RELEASE, "strimzi.io/kind": "Kafka", "strimzi.io/name": f"{RELEASE}-kafka"}
    assert chartlib.selector_matches(pm["spec"]["selector"], broker)
    assert "tcp-prometheus" in {e["port"] for e in pm["spec"]["podMetricsEndpoints"]}
    rules = chartlib.kind_of(docs, "PrometheusRule")[0]["spec"]["groups"][0]["rules"]
    alerts = {r["alert"] for r in rules}
    assert {"GoStreamTargetDown", "GoStreamConsumerLagHigh", "GoStreamNoTradesStored"} <= alerts
    for rule in rules:
        assert "{{ $" not in rule["expr"], "Helm left a template in a PromQL expression"


def test_monitors_are_off_by_default(render):
    docs = render("defaults")
    assert not [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]


def test_helm_test_pod_checks_the_api(render):
    docs = render("defaults")
    pods = [d for d in chartlib.kind_of(docs, "Pod") if chartlib.is_hook(d)]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["API_URL"] == f"http://{RELEASE}-api:3000"
    script = container["command"][-1]
    compile(script, "helm-test", "exec")  # the inline check is valid Python
    assert "/candles" in script and "/readyz" in script


# ----------------------------------------------------------------------------------------------
# NetworkPolicies


def _pods(docs) -> dict[str, Endpoint]:
    return {t.labels["app.kubernetes.io/component"]: Endpoint.pod(t.labels) for t in chartlib.pod_templates(docs)}


KAFKA_BROKER = Endpoint.pod(
    {"strimzi.io/cluster": RELEASE, "strimzi.io/kind": "Kafka", "strimzi.io/name": f"{RELEASE}-kafka", "strimzi.io/broker-role": "true"}
)
KAFKA_PORT = 9093  # Strimzi's client listener: TLS + SCRAM-SHA-512 by default
STRIMZI_OPERATOR = Endpoint.pod({"strimzi.io/kind": "cluster-operator", "name": "strimzi-cluster-operator"})
PROMETHEUS = Endpoint.pod({"app.kubernetes.io/name": "prometheus"}, namespace="monitoring")
OKX = Endpoint.external("3.33.33.33")
STRANGER = Endpoint.pod({"app": "something-else"})
OUTSIDE = Endpoint.external("198.51.100.7")


@pytest.mark.parametrize("variant", sorted(v for v in VARIANTS if not v.startswith("external-kafka")))
def test_network_policies_allow_the_pipeline_flows(render, variant):
    docs = render(variant)
    policies = chartlib.kind_of(docs, "NetworkPolicy")
    assert policies, "NetworkPolicies are on by default"
    p = _pods(docs)
    allowed = [
        (p["producer"], KAFKA_BROKER, KAFKA_PORT),
        (p["producer"], OKX, 443),
        (p["producer"], OKX, 8443),
        (p["consumer"], KAFKA_BROKER, KAFKA_PORT),
        (p["consumer"], p["questdb"], 9000),
        (p["producer"], p["questdb"], 9000),
        (p["api"], p["questdb"], 8812),
        (p["frontend"], p["api"], 3000),
        (p["test"], p["api"], 3000),
        (OUTSIDE, p["frontend"], 8080),
        (STRANGER, p["frontend"], 8080),
        (PROMETHEUS, p["producer"], 9101),
        (PROMETHEUS, p["consumer"], 9102),
        (PROMETHEUS, p["api"], 3000),
        (PROMETHEUS, p["frontend"], 8080),
        (PROMETHEUS, p["questdb"], 9003),
        # Strimzi's own pods are left to the policies the operator writes.
        (STRIMZI_OPERATOR, KAFKA_BROKER, 9091),
        (KAFKA_BROKER, STRIMZI_OPERATOR, 8080),
    ]
    for src, dst, port in allowed:
        assert flow_allowed(policies, src, dst, port), f"blocked: {src} -> {dst} :{port}"
    for name in ("producer", "consumer", "api", "frontend", "questdb", "test"):
        assert flow_allowed(policies, p[name], Endpoint.pod({"k8s-app": "kube-dns"}, "kube-system"), 53, "UDP"), name
    denied = [
        (p["producer"], p["questdb"], 8812),
        (p["api"], KAFKA_BROKER, KAFKA_PORT),
        (p["api"], p["questdb"], 9000),
        (p["frontend"], p["questdb"], 8812),
        (p["frontend"], KAFKA_BROKER, KAFKA_PORT),
        (p["consumer"], OKX, 443),
        (p["api"], OUTSIDE, 443),
        (p["questdb"], OUTSIDE, 443),
        (STRANGER, p["api"], 3000),
        (STRANGER, p["questdb"], 8812),
        (STRANGER, p["questdb"], 9000),
        (OUTSIDE, p["questdb"], 9000),
        (STRANGER, p["producer"], 9101),
    ]
    for src, dst, port in denied:
        assert not flow_allowed(policies, src, dst, port), f"not blocked: {src} -> {dst} :{port}"


def test_network_policies_never_select_strimzi_pods(render):
    for variant in VARIANTS:
        for policy in chartlib.kind_of(render(variant), "NetworkPolicy"):
            selector = policy["spec"]["podSelector"]
            assert selector.get("matchLabels", {}).get("app.kubernetes.io/component"), policy["metadata"]["name"]
            assert not chartlib.selector_matches(selector, dict(KAFKA_BROKER.labels))


def test_kafka_listener_admits_only_the_pipeline_clients(render):
    docs = render("defaults")
    listener = chartlib.by_name(docs, "Kafka", RELEASE)["spec"]["kafka"]["listeners"][0]
    peers = listener["networkPolicyPeers"]
    p = _pods(docs)
    admitted = {name for name, ep in p.items() if any(chartlib.selector_matches(x["podSelector"], dict(ep.labels)) for x in peers)}
    assert admitted == {"producer", "consumer"}


def test_external_kafka_egress(render):
    docs = render("external-kafka")
    policies = chartlib.kind_of(docs, "NetworkPolicy")
    p = _pods(docs)
    broker = Endpoint.external("10.20.30.40")
    assert flow_allowed(policies, p["producer"], broker, 9092)
    assert flow_allowed(policies, p["consumer"], broker, 9092)
    assert not flow_allowed(policies, p["api"], broker, 9092)


def test_monitoring_variant_limits_scrapers_to_its_namespace(render):
    docs = render("monitoring")
    policies = chartlib.kind_of(docs, "NetworkPolicy")
    p = _pods(docs)
    assert flow_allowed(policies, PROMETHEUS, p["consumer"], 9102)
    assert not flow_allowed(policies, Endpoint.pod({"app.kubernetes.io/name": "prometheus"}, "elsewhere"), p["consumer"], 9102)


def test_network_policies_can_be_turned_off(helm):
    docs = helm.template(sets=["networkPolicy.enabled=false"])
    assert not chartlib.kind_of(docs, "NetworkPolicy")
    assert "networkPolicyPeers" not in chartlib.by_name(docs, "Kafka", RELEASE)["spec"]["kafka"]["listeners"][0]


# ----------------------------------------------------------------------------------------------
# Ingress and HTTPRoute

INGRESS_NGINX = Endpoint.pod({"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
                             namespace="ingress-nginx")
GATEWAY_PROXY = Endpoint.pod({"app.kubernetes.io/name": "envoy"}, namespace="gateway-system")


def test_ingress_and_route_are_off_by_default(render):
    docs = render("defaults")
    assert not chartlib.kind_of(docs, "Ingress") and not chartlib.kind_of(docs, "HTTPRoute")
    policies = chartlib.kind_of(docs, "NetworkPolicy")
    assert not flow_allowed(policies, INGRESS_NGINX, _pods(docs)["api"], 3000), "nothing is routed to the api"


def test_ingress_routes_api_straight_to_the_api_and_the_rest_to_the_frontend(render):
    docs = render("ingress")
    api = chartlib.by_name(docs, "Ingress", f"{RELEASE}-api")
    frontend = chartlib.by_name(docs, "Ingress", f"{RELEASE}-frontend")
    for ing in (api, frontend):
        assert ing["spec"]["ingressClassName"] == "nginx"
        assert ing["spec"]["tls"] == [{"secretName": "gostream-terminal-tls", "hosts": ["terminal.example.com"]}]
        assert [r["host"] for r in ing["spec"]["rules"]] == ["terminal.example.com"]
        assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    (path,) = api["spec"]["rules"][0]["http"]["paths"]
    assert path["backend"]["service"] == {"name": f"{RELEASE}-api", "port": {"number": 3000}}
    assert path["pathType"] == "ImplementationSpecific"
    ann = api["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/use-regex"] == "true"
    # ingress-nginx's rewrite: the path regex's second group becomes the upstream path
    import re

    pattern, target = re.compile(path["path"]), ann["nginx.ingress.kubernetes.io/rewrite-target"]
    for incoming, upstream in (("/api/candles", "/candles"), ("/api", "/"), ("/api/", "/"), ("/api/stream", "/stream")):
        match = pattern.match(incoming)
        assert match and match.expand(target.replace("$", "\\")) == upstream, incoming
    assert not pattern.match("/apix"), "only the /api segment"
    # Server-Sent Events: nothing buffered, an hour of silence allowed both ways
    assert ann["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(ann["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    (path,) = frontend["spec"]["rules"][0]["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert path["backend"]["service"] == {"name": f"{RELEASE}-frontend", "port": {"number": 8080}}
    assert not any(k.startswith("nginx.ingress.kubernetes.io/") for k in frontend["metadata"].get("annotations", {}))


def test_ingress_without_hosts_or_tls(helm):
    docs = helm.template(sets=["ingress.enabled=true", "ingress.className="])
    for ing in chartlib.kind_of(docs, "Ingress"):
        assert "ingressClassName" not in ing["spec"] and "tls" not in ing["spec"]
        assert [set(r) for r in ing["spec"]["rules"]] == [{"http"}]


def test_httproute_rewrites_api_to_the_api(render):
    (route,) = chartlib.kind_of(render("ingress"), "HTTPRoute")
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}]
    assert spec["hostnames"] == ["terminal.example.com"]
    api, rest = spec["rules"]
    assert api["matches"] == [{"path": {"type": "PathPrefix", "value": "/api"}}]
    assert api["filters"] == [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]
    assert api["backendRefs"] == [{"name": f"{RELEASE}-api", "port": 3000}]
    assert api["timeouts"] == {"request": "0s"}
    assert rest["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rest["backendRefs"] == [{"name": f"{RELEASE}-frontend", "port": 8080}]


def test_httproute_only_where_the_gateway_api_is_served(helm):
    sets = ["httpRoute.enabled=true", "httpRoute.parentRefs[0].name=public"]
    assert not chartlib.kind_of(helm.template(sets=sets, api_versions=()), "HTTPRoute")
    assert chartlib.kind_of(helm.template(sets=sets), "HTTPRoute")
    result = helm.run("template", "x", str(chartlib.CHART), "--kube-version", chartlib.MIN_KUBE,
                      "--api-versions", "gateway.networking.k8s.io/v1/HTTPRoute", "--set", "httpRoute.enabled=true", check=False)
    assert result.returncode != 0 and "parentRefs" in result.stderr


def test_the_api_trusts_the_configured_proxies(render, helm):
    cm = chartlib.by_name(render("defaults"), "ConfigMap", f"{RELEASE}-api")["data"]
    assert cm["TRUSTED_PROXY_HOPS"] == "1"
    assert cm["TRUSTED_PROXIES"] == "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7"
    assert chartlib.by_name(render("ingress"), "ConfigMap", f"{RELEASE}-api")["data"]["TRUSTED_PROXIES"] == "10.0.0.0/8"
    docs = helm.template(sets=["api.trustedProxyHops=0"])
    assert chartlib.by_name(docs, "ConfigMap", f"{RELEASE}-api")["data"]["TRUSTED_PROXY_HOPS"] == "0"


def test_network_policies_admit_the_ingress_controller_to_the_api(render, helm):
    docs = render("ingress")
    policies = chartlib.kind_of(docs, "NetworkPolicy")
    p = _pods(docs)
    assert flow_allowed(policies, INGRESS_NGINX, p["api"], 3000)
    assert flow_allowed(policies, GATEWAY_PROXY, p["api"], 3000)
    assert flow_allowed(policies, INGRESS_NGINX, p["frontend"], 8080)
    for src in (STRANGER, Endpoint.pod({"app.kubernetes.io/name": "ingress-nginx"}, namespace="elsewhere"), OUTSIDE):
        assert not flow_allowed(policies, src, p["api"], 3000), src
    assert not flow_allowed(policies, INGRESS_NGINX, p["api"], 8812)
    # the default peer: ingress-nginx controllers in any namespace
    docs = helm.template(sets=["ingress.enabled=true"])
    policies, p = chartlib.kind_of(docs, "NetworkPolicy"), _pods(docs)
    assert flow_allowed(policies, Endpoint.pod({"app.kubernetes.io/name": "ingress-nginx"}, namespace="anywhere"), p["api"], 3000)
    assert not flow_allowed(policies, STRANGER, p["api"], 3000)

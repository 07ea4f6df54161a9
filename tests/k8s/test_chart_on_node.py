"""The chart's pods running for real on a single-node cluster (tests/k8s/node.py): installed
with the images built in this run into a namespace enforcing the restricted Pod Security
level, Kafka through the chart's external-Kafka mode (a broker this module starts on the
pod bridge's gateway), the simulated exchange on the same address. Every pod must become
Ready through its own readiness probe; a trade printed by the exchange must reach QuestDB
through the pods and come back from /api/candles through `kubectl port-forward` to the
frontend Service, and the terminal draw it in Chromium over that port-forward; the NetworkPolicies must refuse a pod outside the pipeline; `helm test`
must pass; a pull of an image that was not imported must fail on the machine itself.

Pod logs, `kubectl describe` and the node's component logs go to test-artifacts/k8s-node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from stack import components as c
from stack.process import Process
from tests.conftest import TEST_PORTS, unique
from tests.k8s import checks, cluster, node, prometheus
from tests.k8s.conftest import Helm, apply_crds
from tests.frontend.test_browser import ARGS as CHROMIUM_ARGS
from tests.frontend.test_browser import CHROMIUM, DRAWN
from tests.okxsim import OkxExchange, generate

CHART = cluster.REPO / "charts" / "gostream"
ARTIFACTS = cluster.REPO / "test-artifacts" / "k8s-node"
RELEASE = "gostream"
NAMESPACE = "gostream"
SYMBOL = "BTC-USDT"
TAG = "test"
SERVICES = ("producer", "consumer", "api", "frontend")
IMAGES = [f"localhost/gostream-{name}:{TAG}" for name in (*SERVICES, "questdb")]
# Kafka for the pods: the session's ports + 400 (tests/images uses +200), on the gateway.
KAFKA_PORTS = TEST_PORTS.shifted(400)
# The chart's producer may only call the exchange on 443/8443 (networkPolicy): the simulated
# exchange takes 8443 on the gateway address, which nothing else on the machine uses.
EXCHANGE_PORT = 8443
KUBECTL = cluster.BIN_DIR / "kubectl"


def _build_images() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    c.ensure_jars()  # the QuestDB image ships the jar
    env = {**os.environ, "TAG": TAG, "BUILD_LOG_DIR": str(ARTIFACTS),
           "BASE_IMAGE": "localhost/gostream-base:bookworm", "RUNTIME_IMAGE": "localhost/gostream-base:bookworm-runtime"}
    result = subprocess.run([str(cluster.REPO / "images" / "build.sh"), *SERVICES, "questdb"], cwd=cluster.REPO,
                            env=env, capture_output=True, text=True, timeout=3600)
    (ARTIFACTS / "images-build.txt").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        pytest.fail(f"images/build.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}", pytrace=False)


class Kubectl:
    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig

    def argv(self, *args: str) -> list[str]:
        return [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args]

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result

    @contextlib.contextmanager
    def port_forward(self, target: str, remote_port: int, namespace: str = NAMESPACE):
        local = TEST_PORTS.frontend + 400
        if c.port_open(local):
            pytest.fail(f"port {local} is taken: stop whatever listens there and retry")
        log = ARTIFACTS / f"port-forward-{target.replace('/', '-')}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(self.argv("port-forward", "-n", namespace, "--address", "127.0.0.1",
                                                 target, f"{local}:{remote_port}"),
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            cluster.wait_for(f"kubectl port-forward {target}", lambda: c.port_open(local), 30, 0.3,
                             alive=lambda: process.poll() is None or pytest.fail(log.read_text()))
            yield f"http://127.0.0.1:{local}"
        finally:
            process.terminate()
            process.wait(10)


@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory):
    """Control plane + node + Kafka + exchange, and the chart installed; torn down in reverse."""
    try:
        node.preflight()
        cluster.helm_binary()
        if not os.access(KUBECTL, os.X_OK):
            raise cluster.ToolMissing(f"{KUBECTL} is missing: `make k8s-tools`")
    except cluster.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.monotonic()
    _build_images()
    timings["images"] = time.monotonic() - start

    workdir = tmp_path_factory.mktemp("k8s-node")
    plane = node.plane(workdir / "plane", ARTIFACTS)
    the_node = node.Node(plane, workdir / "node", ARTIFACTS)
    kafka: Process | None = None
    exchange: OkxExchange | None = None
    ctx: dict = {"timings": timings}
    try:
        t = time.monotonic()
        node.stop_stale()  # a session killed before its teardown: its node goes before the plane starts
        plane.start()
        the_node.start(IMAGES)
        timings["node"] = time.monotonic() - t

        kafka = Process(c.kafka(workdir / "kafka-data", KAFKA_PORTS, host=node.GATEWAY), ARTIFACTS / "kafka").start()
        kafka.wait_ready(120)
        bootstrap = f"{node.GATEWAY}:{KAFKA_PORTS.kafka}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.create_topics([NewTopic("trades", 12, 1), NewTopic("trades.dlq", 1, 1)])
        finally:
            admin.close()
        exchange = OkxExchange(host=node.GATEWAY, port=EXCHANGE_PORT).__enter__()

        kube = plane.kube
        apply_crds(kube)  # the chart's ServiceMonitors, which the test's Prometheus reads back
        checks.restricted_namespace(kube, NAMESPACE)
        _questdb_volume(kube, workdir / "questdb-pv")
        helm = Helm(cluster.helm_binary(), plane.kubeconfig, workdir / "helm-home")
        t = time.monotonic()
        result = helm.run("install", RELEASE, str(CHART), "-n", NAMESPACE, "-f",
                          str(CHART / "ci" / "external-kafka-values.yaml"),
                          "-f", str(_values(workdir, bootstrap, exchange)), "--wait", "--timeout", "4m", check=False)
        timings["install"] = time.monotonic() - t
        timings.update(_memory_mb(plane, the_node))
        ctx.update(plane=plane, node=the_node, kube=kube, helm=helm, exchange=exchange, kafka=kafka,
                   kubectl=Kubectl(plane.kubeconfig), install=result, bootstrap=bootstrap)
        yield ctx
    finally:
        if plane.kube is not None:
            _collect(plane, ARTIFACTS)
        if exchange is not None:
            exchange.__exit__(None, None, None)
        the_node.stop()
        plane.stop()
        if kafka is not None:
            kafka.stop()
        timings["total"] = time.monotonic() - start
        (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))


@pytest.fixture(scope="module")
def scraper(node_cluster, tmp_path_factory):
    """The test's Prometheus on the node's host, configured from the release's ServiceMonitors
    (as read back from the API server) and its pods' scrape annotations."""
    kube, the_node = node_cluster["kube"], node_cluster["node"]
    assert node_cluster["install"].returncode == 0, "the release is not installed"
    kube.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", prometheus.CLUSTER_ROLE)
    kube.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", prometheus.CLUSTER_ROLE_BINDING)
    monitors = kube.items(f"/apis/monitoring.coreos.com/v1/namespaces/{NAMESPACE}/servicemonitors")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = prometheus.config(monitors, [NAMESPACE], node_cluster["plane"].certs, node.PLANE_PORTS.apiserver)
    config_file = prometheus.write_config(workdir / "prometheus.yml", config)
    shutil.copy2(config_file, ARTIFACTS / "prometheus.yml")
    process = the_node.run_on_host("prometheus", prometheus.argv(config_file, workdir / "data"))
    try:
        cluster.wait_for("Prometheus ready", prometheus.ready, 60, 0.5, alive=process.check_alive)
        yield {"monitors": monitors, "jobs": [job["job_name"] for job in config["scrape_configs"]],
               "process": process}
    finally:
        process.stop()


def _rss_mb(pids) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


def _memory_mb(plane: cluster.ControlPlane, the_node: node.Node) -> dict[str, float]:
    """Resident memory of the cluster's own processes and of the pods (for the report)."""
    infra = [c.process.pid for c in (*plane.components, *the_node.components)]
    pods = {int(p) for group in Path("/sys/fs/cgroup/memory/k8s.io").glob("*/cgroup.procs")
            for p in group.read_text().split()}
    return {"infra_rss_mb": _rss_mb(infra), "pods_rss_mb": _rss_mb(pods)}


def _node_values(exchange: OkxExchange) -> dict:
    """What any release on this node needs: images never pulled (QuestDB's built in this
    run), a small QuestDB, the test's exchange on the gateway."""
    return {
        "global": {"imagePullPolicy": "Never"},
        "questdb": {"image": {"registry": "localhost", "repository": "gostream-questdb", "tag": TAG,
                              "pullPolicy": "Never"},
                    "jvmArgs": "-Xms128m -Xmx512m",
                    "persistence": {"size": "1Gi"},
                    "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}},
        "okx": {"wsUrl": exchange.ws_url(), "restUrl": exchange.rest_url},
        "networkPolicy": {"exchangeEgressCidrs": [f"{node.GATEWAY}/32"]},
        "config": {"symbols": [SYMBOL], "historyWindow": "0"},
    }


def _values(workdir: Path, bootstrap: str, exchange: OkxExchange) -> Path:
    """The helm install's values on top of ci/external-kafka-values.yaml: the node's, the
    services' images of this run, the test's Kafka on the gateway, the ServiceMonitors the
    test's Prometheus is configured from."""
    values = _node_values(exchange)
    values["global"]["imageRegistry"] = "localhost"
    values |= {svc: {"image": {"tag": TAG}} for svc in SERVICES}
    values |= {"kafka": {"externalBootstrapServers": bootstrap, "externalPorts": [KAFKA_PORTS.kafka]},
               "metrics": {"serviceMonitor": {"enabled": True}}}
    path = workdir / "node-values.yaml"
    path.write_text(json.dumps(values, indent=2))
    return path


def _questdb_volume(kube: cluster.Kube, directory: Path) -> None:
    """The PersistentVolume QuestDB's claim binds to (the node has no provisioner)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, 10001, 10001)  # a hostPath volume keeps its owner (no fsGroup change)
    kube.create("/api/v1/persistentvolumes", {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "gostream-questdb-test"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain",
                 "hostPath": {"path": str(directory), "type": "Directory"}},
    })


def _collect(plane: cluster.ControlPlane, out: Path) -> None:
    """Pod logs, descriptions and events of every namespace, for a failed run's reader."""
    kubectl = Kubectl(plane.kubeconfig)
    out.mkdir(parents=True, exist_ok=True)
    for args, name in ((["get", "all,pvc,pv,networkpolicy,events", "-A", "-o", "wide"], "get-all.txt"),
                       (["describe", "pods", "-A"], "describe-pods.txt"),
                       (["describe", "nodes"], "describe-nodes.txt")):
        result = kubectl.run(*args, check=False, timeout=60)
        (out / name).write_text(result.stdout + result.stderr)
    try:
        pods = plane.kube.items("/api/v1/pods")
    except cluster.ApiError:
        return
    for pod in pods:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            for previous in ("false", "true"):
                try:
                    text = plane.kube.get(f"/api/v1/namespaces/{ns}/pods/{name}/log",
                                          container=container["name"], previous=previous)
                except cluster.ApiError:
                    continue
                suffix = "-previous" if previous == "true" else ""
                (out / f"pod-{ns}-{name}-{container['name']}{suffix}.log").write_text(str(text))


# --- helpers ------------------------------------------------------------------------------

def _pods(kube, namespace: str = NAMESPACE, selector: str = f"app.kubernetes.io/instance={RELEASE}") -> list[dict]:
    return kube.items(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector)


def _ready(pod: dict) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return conditions.get("Ready") == "True"


def _pod_summary(kube) -> str:
    return "; ".join(f"{p['metadata']['name']}: {p['status'].get('phase')} ready={_ready(p)} "
                     f"{[(s['name'], s.get('restartCount'), list(s.get('state', {}))) for s in p['status'].get('containerStatuses', [])]}"
                     for p in _pods(kube))


def _run_pod(kube, namespace: str, name: str, image: str, script: str, labels: dict | None = None,
             timeout: float = 120) -> tuple[str, str]:
    """Run `python3 -c script` in a restricted-level pod to its end: (phase, log)."""
    security = {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    kube.create(f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": "probe"}},
        "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                 "containers": [{"name": "probe", "image": image, "imagePullPolicy": "Never",
                                 "command": ["python3", "-c", script], "securityContext": security}]},
    })

    def finished():
        pod = kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        return pod["status"].get("phase") if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    phase = cluster.wait_for(f"pod {namespace}/{name} to finish", finished, timeout, 1)
    log = kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}/log")  # a JSON log line comes back parsed
    kube.delete(f"/api/v1/namespaces/{namespace}/pods/{name}")
    return phase, log if isinstance(log, str) else json.dumps(log)


# A probe's connection attempts, as JSON: target -> "open" | the error. kube-router admits a
# new pod's traffic about a second after the pod starts (its sets sync late), so a target
# counts as refused only after attempts for several seconds all failed.
CONNECT_SCRIPT = """
import json, socket, time
from concurrent.futures import ThreadPoolExecutor
def attempt(target):
    deadline = time.time() + 8
    while True:
        try:
            socket.create_connection(tuple(target), timeout=2).close()
            return "open"
        except OSError as exc:
            if time.time() > deadline:
                return type(exc).__name__
            time.sleep(0.5)
with ThreadPoolExecutor(len(TARGETS)) as pool:
    print(json.dumps({f"{h}:{p}": r for (h, p), r in zip(TARGETS, pool.map(attempt, TARGETS))}))
"""


def _connect_probe(kube, namespace: str, name: str, targets: list[tuple[str, int]], labels: dict | None = None) -> dict:
    script = f"TARGETS = {json.dumps(targets)}\n" + CONNECT_SCRIPT
    phase, log = _run_pod(kube, namespace, name, IMAGES[2], script, labels)
    assert phase == "Succeeded", f"probe pod {name} failed: {log}"
    return json.loads(log.strip().splitlines()[-1])


# --- tests --------------------------------------------------------------------------------

def test_every_pod_becomes_ready_through_its_probe(node_cluster):
    kube, result = node_cluster["kube"], node_cluster["install"]
    assert result.returncode == 0, f"helm install --wait failed:\n{result.stderr}\npods: {_pod_summary(kube)}"
    pods = _pods(kube)
    components = sorted(p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods)
    assert components == ["api", "consumer", "frontend", "producer", "questdb"], components
    for pod in pods:
        assert _ready(pod), f"{pod['metadata']['name']} is not Ready: {_pod_summary(kube)}"
        for container in pod["spec"]["containers"]:
            assert container.get("readinessProbe"), f"{pod['metadata']['name']}/{container['name']} has no readiness probe"
        for status in pod["status"]["containerStatuses"]:
            assert status["restartCount"] == 0, f"{pod['metadata']['name']} restarted: {_pod_summary(kube)}"


def _scraped_pods(kube) -> dict[str, str]:
    """The pods a Prometheus should scrape: every running pod of the release's workloads
    (name -> component); the `helm test` pod and pods on their way out are not among them."""
    return {p["metadata"]["name"]: p["metadata"]["labels"].get("app.kubernetes.io/component") for p in _pods(kube)
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
            and p["metadata"]["labels"].get("app.kubernetes.io/component") != "test"}


def test_prometheus_discovers_every_pod_through_the_api_server_and_scrapes_it(node_cluster, scraper):
    """A Prometheus discovering through the API server, with the chart's ServiceMonitors
    translated as prometheus-operator translates them and the community chart's job for the
    prometheus.io annotations, finds every pod of the release once per way, and each scrape
    succeeds: no component missing, none scraped twice, all up."""
    kube = node_cluster["kube"]
    assert sorted(m["metadata"]["name"] for m in scraper["monitors"]) == [RELEASE, f"{RELEASE}-questdb"]
    monitor_jobs = [job for job in scraper["jobs"] if job.startswith("serviceMonitor/")]
    state: dict = {}

    def all_scraped():
        state["expected"] = expected = _scraped_pods(kube)
        state["targets"] = targets = prometheus.active_targets()
        by_monitors = sorted((t["pod"], t["component"]) for t in targets if t["pool"] in monitor_jobs)
        by_annotations = sorted(t["pod"] for t in targets if t["pool"] == prometheus.ANNOTATIONS_JOB)
        return (sorted(expected.values()) == ["api", "consumer", "frontend", "producer", "questdb"]
                and by_monitors == sorted(expected.items())
                and by_annotations == sorted(expected)
                and all(t["health"] == "up" for t in targets))

    try:
        cluster.wait_for("every pod of the release a target of the monitors' jobs and of the annotations job, all up",
                         all_scraped, 180, 2, alive=scraper["process"].check_alive,
                         detail=lambda: json.dumps(state, indent=1))
    finally:
        (ARTIFACTS / "prometheus-targets.json").write_text(json.dumps(state, indent=1))


def test_a_trade_flows_from_the_exchange_to_candles_through_port_forward(node_cluster):
    kube, exchange, kubectl = node_cluster["kube"], node_cluster["exchange"], node_cluster["kubectl"]
    cluster.wait_for(f"the producer pod subscribed to {SYMBOL}", lambda: exchange.subscribed(SYMBOL) >= 1, 120, 1,
                     detail=lambda: _pod_summary(kube))
    now_ms = int(time.time() * 1000) // 60_000 * 60_000 - 120_000  # a closed minute, two ago
    trades = generate(SYMBOL, 9, first_id=5_000_000, start_ms=now_ms, step_ms=3)
    exchange.emit(trades)
    minute = now_ms // 1000
    prices = [float(t["px"]) for t in trades]
    with kubectl.port_forward(f"svc/{RELEASE}-frontend", 8080) as base:
        bar = _candle_at(base, kube, minute, sum(float(t["sz"]) for t in trades),
                         f"the {SYMBOL} candle of minute {minute} from /api/candles via port-forward")
        assert bar["open"] == prices[0] and bar["close"] == prices[-1]
        assert bar["high"] == max(prices) and bar["low"] == min(prices)
        _terminal_draws(base, minute)


def _terminal_draws(base: str, minute: int) -> None:
    """The terminal, in Chromium over the same port-forward, loads that bar and draws it."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: run `make deps` (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{base}/?symbol={SYMBOL}&interval=1m")
            page.wait_for_function(f"() => window.terminal && window.terminal.bars.some((b) => b.time === {minute})",
                                   timeout=60_000)
            page.wait_for_function(DRAWN, timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "terminal.png"))
        finally:
            browser.close()


def test_network_policies_refuse_pods_outside_the_pipeline(node_cluster):
    kube = node_cluster["kube"]
    api, questdb = f"{RELEASE}-api.{NAMESPACE}.svc", f"{RELEASE}-questdb.{NAMESPACE}.svc"
    targets = [(api, 3000), (questdb, 9000), (questdb, 8812)]
    other = unique("outsider-")
    checks.restricted_namespace(kube, other)
    outside = _connect_probe(kube, other, "outsider", targets)
    assert "open" not in outside.values(), f"a pod of another namespace reached the pipeline: {outside}"
    # refused or dropped by the policies, not lost on the way (names resolve: DNS is admitted)
    assert "gaierror" not in outside.values(), outside
    # The same probe labelled as the chart's test pod may reach the api, and only the api:
    # the policies admit that flow, so the refusals above are the policies' doing.
    allowed = _connect_probe(kube, NAMESPACE, "as-test-pod", targets, labels={
        "app.kubernetes.io/name": "gostream", "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "test"})
    assert allowed[f"{api}:3000"] == "open", allowed
    assert allowed[f"{questdb}:9000"] not in ("open", "gaierror"), allowed
    assert allowed[f"{questdb}:8812"] not in ("open", "gaierror"), allowed


def test_network_policies_admit_a_prometheus_pod_to_every_metrics_port(node_cluster):
    """The test's Prometheus scrapes from the host, which kube-router admits as the pods' own
    node whatever the policies say (the kubelet's probes come from there), so the policies'
    metrics rule (networkPolicy.metricsFrom) is checked here: a pod labelled as
    kube-prometheus-stack's and the community chart's Prometheus servers, in a namespace of its
    own, reaches each pod's annotated metrics port; the same pod without that label reaches
    only the frontend's, which is the dashboard's port too (open to any source by default:
    networkPolicy.frontendFrom)."""
    kube = node_cluster["kube"]
    scraped = _scraped_pods(kube)
    ports = {scraped[p["metadata"]["name"]]: f"{p['status']['podIP']}:{p['metadata']['annotations']['prometheus.io/port']}"
             for p in _pods(kube) if p["metadata"]["name"] in scraped}
    assert sorted(ports) == ["api", "consumer", "frontend", "producer", "questdb"], ports
    targets = [(address.split(":")[0], int(address.split(":")[1])) for address in ports.values()]
    monitoring = unique("monitoring-")
    checks.restricted_namespace(kube, monitoring)
    admitted = _connect_probe(kube, monitoring, "prometheus", targets, labels={"app.kubernetes.io/name": "prometheus"})
    assert set(admitted.values()) == {"open"}, admitted
    refused = _connect_probe(kube, monitoring, "not-prometheus", targets)
    assert sorted(c for c, address in ports.items() if refused[address] == "open") == ["frontend"], refused


def test_helm_test_passes(node_cluster):
    helm = node_cluster["helm"]
    # (no --logs: the hook's delete policy removes the pod once it succeeded)
    result = helm.run("test", RELEASE, "-n", NAMESPACE, "--timeout", "3m", check=False)
    assert result.returncode == 0, f"helm test failed:\n{result.stderr}\n{result.stdout}"
    assert "Phase:          Succeeded" in result.stdout, result.stdout


def test_an_image_that_was_not_imported_is_never_fetched_from_outside(node_cluster):
    kube = node_cluster["kube"]
    name = "unknown-image"
    kube.create(f"/api/v1/namespaces/{NAMESPACE}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "x", "image": "registry.example.org/nothing/here:1",
                                 "imagePullPolicy": "Always",
                                 "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                                     "allowPrivilegeEscalation": False,
                                                     "capabilities": {"drop": ["ALL"]},
                                                     "seccompProfile": {"type": "RuntimeDefault"}}}]},
    })

    def failed_pull():
        events = kube.items(f"/api/v1/namespaces/{NAMESPACE}/events",
                            fieldSelector=f"involvedObject.name={name},reason=Failed")
        return [e["message"] for e in events if "pull" in e["message"].lower()]

    messages = cluster.wait_for("the pull of an unknown image to fail", failed_pull, 60, 1)
    kube.delete(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
    text = " ".join(messages)
    assert node.CLOSED_REGISTRY.removeprefix("http://") in text, text
    assert "lookup" not in text and "no such host" not in text, f"a DNS lookup was attempted: {text}"


def _candle_via_frontend(kubectl, kube, minute: int, volume: float, what: str) -> dict:
    with kubectl.port_forward(f"svc/{RELEASE}-frontend", 8080) as base:
        return _candle_at(base, kube, minute, volume, what)


def _candle_at(base: str, kube, minute: int, volume: float, what: str) -> dict:
    """The 1m bar of `minute` from /api/candles at `base` once it holds `volume`."""
    query = f"/api/candles?symbol={SYMBOL}&interval=1m&from={minute - 60}&to={minute + 120}"

    def candle():
        try:
            with urllib.request.urlopen(base + query, timeout=5) as response:
                found = json.loads(response.read())
        except OSError:
            return None
        hits = [bar for bar in found if bar["time"] == minute]
        return hits[0] if hits and hits[0]["volume"] == pytest.approx(volume) else None

    return cluster.wait_for(what, candle, 120, 1, detail=lambda: _pod_summary(kube))


def test_helm_upgrade_rolls_the_pods_and_they_come_back_ready(node_cluster):
    kube, helm = node_cluster["kube"], node_cluster["helm"]
    before = {p["metadata"]["uid"] for p in _pods(kube)}
    result = helm.run("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values",
                      "--set", "config.logLevel=DEBUG", "--wait", "--timeout", "4m", check=False)
    assert result.returncode == 0, f"helm upgrade failed:\n{result.stderr}\npods: {_pod_summary(kube)}"

    def rolled():
        pods = [p for p in _pods(kube) if not p["metadata"].get("deletionTimestamp")]
        services = [p for p in pods if p["metadata"]["labels"]["app.kubernetes.io/component"] in SERVICES]
        return (len(services) == len(SERVICES) and all(p["metadata"]["uid"] not in before for p in services)
                and all(_ready(p) for p in pods))

    cluster.wait_for("the four services' pods replaced and every pod Ready", rolled, 180, 1,
                     detail=lambda: _pod_summary(kube))
    # the pods took the new setting from their ConfigMap (its checksum rolled them)
    config = kube.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/{RELEASE}-api")["data"]
    assert config["LOG_LEVEL"] == "DEBUG", config


def test_a_deleted_consumer_pod_is_replaced_and_nothing_is_lost(node_cluster):
    kube, exchange, kubectl = node_cluster["kube"], node_cluster["exchange"], node_cluster["kubectl"]
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=consumer"

    def one_live() -> list[str] | None:
        """The live consumer pod's name once it is the only one (the pod of an earlier
        roll may still be terminating beside it)."""
        names = [p["metadata"]["name"] for p in _pods(kube, selector=selector) if not p["metadata"].get("deletionTimestamp")]
        return names if len(names) == 1 else None

    (old,) = cluster.wait_for("one live consumer pod", one_live, 120, 1, detail=lambda: _pod_summary(kube))
    kube.delete(f"/api/v1/namespaces/{NAMESPACE}/pods/{old}")
    # printed while the consumer is away: its replacement must store them from Kafka
    minute = int(time.time()) // 60 * 60 - 60
    trades = generate(SYMBOL, 25, first_id=5_001_000, start_ms=minute * 1000, step_ms=3, seed=7)
    exchange.emit(trades)

    def replaced():
        pods = [p for p in _pods(kube, selector=selector) if not p["metadata"].get("deletionTimestamp")]
        return len(pods) == 1 and pods[0]["metadata"]["name"] != old and _ready(pods[0])

    cluster.wait_for("a new consumer pod Ready", replaced, 120, 1, detail=lambda: _pod_summary(kube))
    bar = _candle_via_frontend(kubectl, kube, minute, sum(float(t["sz"]) for t in trades),
                               f"all {len(trades)} trades of minute {minute} in its candle")
    assert bar["open"] == float(trades[0]["px"]) and bar["close"] == float(trades[-1]["px"])


def test_helm_uninstall_leaves_only_the_data_claim(node_cluster):
    kube, helm = node_cluster["kube"], node_cluster["helm"]
    helm.run("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m")
    cluster.wait_for("the release's pods gone", lambda: not _pods(kube), 120, 1, detail=lambda: _pod_summary(kube))
    left = checks.leftovers(kube, NAMESPACE)
    # StatefulSet claims are kept (whenDeleted: Retain), as on any cluster
    assert left == [f"/api/v1/persistentvolumeclaims/data-{RELEASE}-questdb-0"], left
    assert checks.cluster_leftovers(kube, RELEASE) == []


# --- skaffold.yaml ------------------------------------------------------------------------

SKAFFOLD = cluster.BIN_DIR / "skaffold"
CLOSED_PROXY = node.CLOSED_REGISTRY  # a closed loopback port


def _skaffold(node_cluster, workdir: Path, *args: str, extra_values: Path, log: str,
              bootstrap: str | None) -> subprocess.CompletedProcess:
    """The real skaffold on the repository's skaffold.yaml, profile external-kafka, against
    the node's API server, with GOSTREAM_KAFKA_BOOTSTRAP = ``bootstrap`` (None: unset); no
    update check, no metrics prompt or upload (a global config of its own), helm from
    .cache/bin and kubectl (its status check runs `kubectl rollout status`) from the node's
    binaries. Its output goes to test-artifacts/k8s-node/skaffold-<log>.log."""
    try:
        cluster.ensure_binaries(("build-skaffold.sh",))
    except cluster.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    if not os.access(SKAFFOLD, os.X_OK):
        pytest.fail(f"{SKAFFOLD} is missing: build it with `make k8s-tools` (k8s-test/build-skaffold.sh)", pytrace=False)
    global_config = workdir / "skaffold-global.yaml"
    global_config.write_text(json.dumps({"global": {"collect-metrics": False, "update-check": False,
                                                    "survey": {"disable-prompt": True}}, "kubeContexts": []}))
    home = workdir / "home"
    env = {
        "PATH": f"{cluster.helm_binary().parent}:{KUBECTL.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "helm-cache"),
        "HELM_CONFIG_HOME": str(home / "helm-config"),
        "HELM_DATA_HOME": str(home / "helm-data"),
        # `skaffold delete` computes the artifacts' inputDigest tags, which asks Docker Hub for
        # the Dockerfiles' base images (ONBUILD): a closed loopback proxy refuses that on the
        # machine, without a DNS lookup (the API server, on loopback, is never proxied).
        "HTTPS_PROXY": CLOSED_PROXY, "HTTP_PROXY": CLOSED_PROXY, "NO_PROXY": "127.0.0.1,localhost",
        "GOSTREAM_EXTRA_VALUES": str(extra_values),
    }
    if bootstrap is not None:
        env["GOSTREAM_KAFKA_BOOTSTRAP"] = bootstrap
    argv = [str(SKAFFOLD), *args, "--filename", "skaffold.yaml", "--profile", "external-kafka",
            "--kubeconfig", str(node_cluster["plane"].kubeconfig), "--config", str(global_config),
            "--update-check=false", "--interactive=false"]
    result = subprocess.run(argv, cwd=cluster.REPO, env=env, capture_output=True, text=True, timeout=420)
    (ARTIFACTS / f"skaffold-{log}.log").write_text(f"$ {' '.join(argv)}\n{result.stdout}\n{result.stderr}")
    return result


def test_skaffold_deploys_the_external_kafka_profile_and_deletes_it(node_cluster, tmp_path):
    """`skaffold deploy -p external-kafka` of the repository's skaffold.yaml with the images
    of this run, after the helm release above was uninstalled (same release, namespace and
    QuestDB claim): skaffold's own status check passes, every pod of the release is Ready
    with those images, on the test's Kafka named by GOSTREAM_KAFKA_BOOTSTRAP and without any
    Strimzi resource; `skaffold delete` removes it again. Without GOSTREAM_KAFKA_BOOTSTRAP
    the profile refuses to deploy, saying what to set."""
    kube = node_cluster["kube"]
    # (already done by the test above, unless it was deselected)
    node_cluster["helm"].run("uninstall", RELEASE, "-n", NAMESPACE, "--ignore-not-found", "--wait", "--timeout", "3m")
    cluster.wait_for("the helm release's pods gone", lambda: not _pods(kube), 120, 1, detail=lambda: _pod_summary(kube))
    extra_values = tmp_path / "node-values.yaml"
    extra_values.write_text(json.dumps(_node_values(node_cluster["exchange"]), indent=2))
    images = [arg for svc in SERVICES for arg in ("--images", f"gostream-{svc}=localhost/gostream-{svc}:{TAG}")]

    unset = _skaffold(node_cluster, tmp_path, "deploy", *images, extra_values=extra_values, log="deploy-unset",
                      bootstrap=None)
    assert unset.returncode != 0, unset.stdout[-2000:]
    assert "set GOSTREAM_KAFKA_BOOTSTRAP to the Kafka bootstrap servers" in unset.stdout + unset.stderr, unset.stderr[-2000:]
    assert not _pods(kube), _pod_summary(kube)

    deploy = _skaffold(node_cluster, tmp_path, "deploy", *images, "--status-check=true", extra_values=extra_values,
                       log="deploy", bootstrap=node_cluster["bootstrap"])
    assert deploy.returncode == 0, f"skaffold deploy failed:\n{deploy.stderr[-4000:]}\npods: {_pod_summary(kube)}"
    assert "Deployments stabilized" in deploy.stdout + deploy.stderr, deploy.stdout[-4000:]
    pods = _pods(kube)
    components = sorted(p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods)
    assert components == ["api", "consumer", "frontend", "producer", "questdb"], components
    assert all(_ready(p) for p in pods), _pod_summary(kube)
    assert {c["image"] for p in pods for c in p["spec"]["containers"]} == set(IMAGES)
    config = kube.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/{RELEASE}-producer")["data"]
    assert config["KAFKA_BOOTSTRAP_SERVERS"] == node_cluster["bootstrap"], config
    policy = kube.get(f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies/{RELEASE}-producer")
    assert KAFKA_PORTS.kafka in [p.get("port") for rule in policy["spec"]["egress"] for p in rule.get("ports", [])]
    assert not [name for name, _ in kube.objects_in_namespace(NAMESPACE) if "strimzi.io" in name]

    delete = _skaffold(node_cluster, tmp_path, "delete", extra_values=extra_values, log="delete",
                       bootstrap=node_cluster["bootstrap"])
    assert delete.returncode == 0, f"skaffold delete failed:\n{delete.stderr[-4000:]}"
    cluster.wait_for("the release's pods gone", lambda: not _pods(kube), 120, 1, detail=lambda: _pod_summary(kube))
    assert checks.leftovers(kube, NAMESPACE) == [f"/api/v1/persistentvolumeclaims/data-{RELEASE}-questdb-0"]

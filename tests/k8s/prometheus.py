"""A Prometheus that discovers the chart's pods through the API server, as a monitoring stack
in the cluster would (issue 19): Prometheus with only its Kubernetes discovery, built by
`make k8s-tools` (k8s-test/build-prometheus.sh), run as a host process of the test node.

Its scrape configuration is generated from what the release declares, so that a drift
between the chart's monitors or annotations and its pods shows up as a missing or failing
target:
  - each ServiceMonitor read back from the API server, translated the way prometheus-operator
    translates it for a Prometheus with `serviceDiscoveryRole: EndpointSlice` (as
    kube-prometheus runs it); one shard, so no hashmod;
  - the prometheus.io/scrape|port|path pod annotations, read by the job the community
    prometheus chart (prometheus-community/prometheus) ships as `kubernetes-pods`.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from tests.k8s import cluster

BINARY = "prometheus"
PORT = 7290  # 127.0.0.1, fixed like the node's other ports (one node per machine)
# Its client certificate (node.plane's extra_certs) and what RBAC grants that user: the
# reads Kubernetes discovery makes, as the community chart's ClusterRole grants them.
USER = "gostream-test-prometheus"
CLUSTER_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
    "metadata": {"name": USER},
    "rules": [
        {"apiGroups": [""], "resources": ["pods", "services", "endpoints"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    ],
}
CLUSTER_ROLE_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
    "metadata": {"name": USER},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER},
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
}
ANNOTATIONS_JOB = "kubernetes-pods"


def _label_name(key: str) -> str:
    """A Kubernetes label key as Prometheus' discovery names it in __meta_* labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _selector_relabelings(selector: dict) -> list[dict]:
    """A label selector of Services as keep/drop rules (prometheus-operator's translation)."""
    rules = []
    for key, value in sorted(selector.get("matchLabels", {}).items()):
        name = _label_name(key)
        rules.append({"action": "keep", "regex": f"({value});true",
                      "source_labels": [f"__meta_kubernetes_service_label_{name}",
                                        f"__meta_kubernetes_service_labelpresent_{name}"]})
    for expression in selector.get("matchExpressions", []):
        name, operator = _label_name(expression["key"]), expression["operator"]
        values = f"({'|'.join(expression.get('values', []))});true"
        pair = [f"__meta_kubernetes_service_label_{name}", f"__meta_kubernetes_service_labelpresent_{name}"]
        present = [f"__meta_kubernetes_service_labelpresent_{name}"]
        rules.append({
            "In": {"action": "keep", "source_labels": pair, "regex": values},
            "NotIn": {"action": "drop", "source_labels": pair, "regex": values},
            "Exists": {"action": "keep", "source_labels": present, "regex": "true"},
            "DoesNotExist": {"action": "drop", "source_labels": present, "regex": "true"},
        }[operator])
    return rules


def _relabelings(relabelings: list[dict]) -> list[dict]:
    """A monitor's relabelings (camelCase) in Prometheus' configuration (snake_case)."""
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [{keys.get(k, k): v for k, v in rule.items()} for rule in relabelings]


TRANSLATED_ENDPOINT_FIELDS = {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels", "relabelings"}


def service_monitor_jobs(monitor: dict, sd: dict) -> list[dict]:
    """One scrape job per endpoint of a ServiceMonitor; `sd` holds the kubernetes_sd_configs
    entry's connection settings (api_server, tls_config)."""
    meta, spec = monitor["metadata"], monitor["spec"]
    for endpoint in spec["endpoints"]:
        # what is not translated here must not be dropped silently (basicAuth, tlsConfig, ...)
        unknown = set(endpoint) - TRANSLATED_ENDPOINT_FIELDS
        if unknown:
            raise ValueError(f"ServiceMonitor {meta['name']}: endpoint fields not translated: {sorted(unknown)}")
    namespaces = spec.get("namespaceSelector", {}).get("matchNames") or [meta["namespace"]]
    jobs = []
    for index, endpoint in enumerate(spec["endpoints"]):
        job = {
            "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}",
            "honor_labels": bool(endpoint.get("honorLabels", False)),
            "kubernetes_sd_configs": [{**sd, "role": "endpointslice", "namespaces": {"names": namespaces}}],
            "metrics_path": endpoint.get("path", "/metrics"),
            "scheme": endpoint.get("scheme", "http"),
            "relabel_configs": [
                {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
                *_selector_relabelings(spec["selector"]),
                {"action": "keep", "source_labels": ["__meta_kubernetes_endpointslice_port_name"],
                 "regex": endpoint["port"]},
                *({"source_labels": ["__meta_kubernetes_endpointslice_address_target_kind",
                                     "__meta_kubernetes_endpointslice_address_target_name"],
                   "separator": ";", "regex": f"{kind};(.*)", "replacement": "${1}", "target_label": label}
                  for kind, label in (("Node", "node"), ("Pod", "pod"))),
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
                {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
                {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"},
                {"target_label": "endpoint", "replacement": endpoint["port"]},
                *_relabelings(endpoint.get("relabelings", [])),
            ],
        }
        for key, name in (("interval", "scrape_interval"), ("scrapeTimeout", "scrape_timeout")):
            if key in endpoint:
                job[name] = endpoint[key]
        jobs.append(job)
    return jobs


def annotations_job(sd: dict, namespaces: list[str]) -> dict:
    """The community prometheus chart's `kubernetes-pods` job (pods annotated
    prometheus.io/scrape: "true"), limited to `namespaces`."""
    return {
        "job_name": ANNOTATIONS_JOB,
        "honor_labels": True,
        "kubernetes_sd_configs": [{**sd, "role": "pod", "namespaces": {"names": namespaces}}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep",
             "regex": "true"},
            {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape_slow"], "action": "drop",
             "regex": "true"},
            {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scheme"], "action": "replace",
             "regex": "(https?)", "target_label": "__scheme__"},
            {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"], "action": "replace",
             "target_label": "__metrics_path__", "regex": "(.+)"},
            {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_port", "__meta_kubernetes_pod_ip"],
             "action": "replace", "regex": r"(\d+);(([A-Fa-f0-9]{1,4}::?){1,7}[A-Fa-f0-9]{1,4})",
             "replacement": "[$2]:$1", "target_label": "__address__"},
            {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_port", "__meta_kubernetes_pod_ip"],
             "action": "replace", "regex": r"(\d+);((([0-9]+?)(\.|$)){4})", "replacement": "$2:$1",
             "target_label": "__address__"},
            {"action": "labelmap", "regex": "__meta_kubernetes_pod_annotation_prometheus_io_param_(.+)",
             "replacement": "__param_$1"},
            {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
            {"source_labels": ["__meta_kubernetes_namespace"], "action": "replace", "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "action": "replace", "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Pending|Succeeded|Failed|Completed",
             "action": "drop"},
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "action": "replace", "target_label": "node"},
        ],
    }


def config(monitors: list[dict], namespaces: list[str], certs: cluster.Certs, apiserver_port: int) -> dict:
    """prometheus.yml: the monitors' jobs and the annotations job, discovering through the API
    server at 127.0.0.1:`apiserver_port` as USER."""
    sd = {"api_server": f"https://127.0.0.1:{apiserver_port}",
          "tls_config": {"ca_file": str(certs.path("ca.crt")), "cert_file": str(certs.path(f"{USER}.crt")),
                         "key_file": str(certs.path(f"{USER}.key"))}}
    return {
        "global": {"scrape_interval": "10s", "scrape_timeout": "5s"},
        "scrape_configs": [*(job for monitor in monitors for job in service_monitor_jobs(monitor, sd)),
                           annotations_job(sd, namespaces)],
    }


def argv(config_file: Path, data_dir: Path) -> list[str]:
    return [str(cluster.binary(BINARY)), f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{PORT}", "--storage.tsdb.retention.time=1h", "--log.level=warn"]


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
    return path


def api(path: str):
    """GET Prometheus' HTTP API; the `data` of a success."""
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=5) as response:
        body = json.loads(response.read())
    if body.get("status") != "success":
        raise OSError(f"{path}: {body}")
    return body["data"]


def ready() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def active_targets() -> list[dict]:
    """Every active target: its scrape pool (the job), pod, component label, health and error."""
    return [{"pool": t["scrapePool"], "pod": t["labels"].get("pod"), "component": t["labels"].get("component"),
             "health": t["health"], "url": t["scrapeUrl"], "error": t.get("lastError", "")}
            for t in api("/api/v1/targets?state=active")["activeTargets"]]

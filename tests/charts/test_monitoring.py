"""The chart's monitoring objects come from the same files the local stack uses:
files/prometheus-rules.yaml (PrometheusRule), files/grafana-dashboard.json (the dashboard
ConfigMap) and files/kafka-jmx-exporter.yaml (Strimzi's metricsConfig)."""

from __future__ import annotations

import base64
import json

import yaml

from gostream.consumer.storage import volume_bytes
from tests.charts import chartlib
from tests.charts.chartlib import CHART, RELEASE

FILES = CHART / "files"


def _rules_file() -> dict:
    return yaml.safe_load((FILES / "prometheus-rules.yaml").read_text())


def _lag_expr(groups: list[dict]) -> str:
    return next(r["expr"] for g in groups for r in g["rules"] if r.get("alert") == "GoStreamConsumerLagHigh")


def test_prometheus_rule_is_the_shared_rules_file(render):
    rule = chartlib.kind_of(render("monitoring"), "PrometheusRule")[0]
    assert rule["spec"]["groups"] == _rules_file()["groups"]


def test_consumer_lag_threshold_comes_from_values(helm):
    docs = helm.template(sets=["metrics.prometheusRule.enabled=true", "metrics.prometheusRule.consumerLagThreshold=2500"])
    groups = chartlib.kind_of(docs, "PrometheusRule")[0]["spec"]["groups"]
    assert _lag_expr(groups) == _lag_expr(_rules_file()["groups"]).replace("> 10000", "> 2500")
    assert _lag_expr(groups).endswith("> 2500")
    # nothing else changed
    others = [r for g in groups for r in g["rules"] if r.get("alert") != "GoStreamConsumerLagHigh"]
    assert others == [r for g in _rules_file()["groups"] for r in g["rules"] if r.get("alert") != "GoStreamConsumerLagHigh"]


def test_monitors_label_targets_by_component(render):
    """The rules select targets by `component`; every monitor endpoint sets it."""
    docs = render("monitoring")
    for sm in chartlib.kind_of(docs, "ServiceMonitor"):
        for endpoint in sm["spec"]["endpoints"]:
            assert {"sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"],
                    "targetLabel": "component"} in endpoint["relabelings"], sm["metadata"]["name"]
    for pm in chartlib.kind_of(docs, "PodMonitor"):
        for endpoint in pm["spec"]["podMetricsEndpoints"]:
            (relabel,) = endpoint["relabelings"]
            assert relabel["targetLabel"] == "component"
            assert relabel["sourceLabels"] == ["__meta_kubernetes_pod_label_strimzi_io_name"]
    # Each Service the monitors select carries the label the relabeling reads.
    services = {s["metadata"]["name"]: s for s in chartlib.kind_of(docs, "Service")}
    for name in ("producer", "consumer", "api", "frontend", "questdb"):
        assert services[f"{RELEASE}-{name}"]["metadata"]["labels"]["app.kubernetes.io/component"] == name


def test_grafana_dashboard_is_off_by_default(render):
    names = [d["metadata"]["name"] for d in chartlib.kind_of(render("defaults"), "ConfigMap")]
    assert f"{RELEASE}-grafana-dashboard" not in names


def test_grafana_dashboard_configmap_for_the_sidecar(render):
    cm = chartlib.by_name(render("monitoring"), "ConfigMap", f"{RELEASE}-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Go-Stream"}
    (key,) = cm["data"]
    assert key.endswith(".json")
    dashboard = json.loads(cm["data"][key])
    assert dashboard == json.loads((FILES / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] == "gostream-pipeline"


def test_grafana_dashboard_label_and_namespace_are_configurable(helm):
    docs = helm.template(sets=["metrics.grafanaDashboard.enabled=true", "metrics.grafanaDashboard.label=dashboards",
                               "metrics.grafanaDashboard.labelValue=gostream",
                               "metrics.grafanaDashboard.namespace=monitoring"])
    cm = chartlib.by_name(docs, "ConfigMap", f"{RELEASE}-grafana-dashboard")
    assert cm["metadata"]["labels"]["dashboards"] == "gostream"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "monitoring"


def test_grafana_dashboard_panels_query_prometheus():
    dashboard = json.loads((FILES / "grafana-dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("trades per second", "latency", "lag", "dead letters", "api", "staleness", "missing"):
        assert topic in titles, topic
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_grafana_dashboard_shows_missing_trade_ids_by_symbol():
    """The completeness audit's gauge, one line per symbol, on a panel of its own."""
    dashboard = json.loads((FILES / "grafana-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if any("gostream_trades_missing" in t["expr"] for t in p.get("targets", []))]
    assert [p["title"] for p in panels] == ["Trade ids missing by symbol"]
    target = panels[0]["targets"][0]
    assert target["expr"].startswith("max by (symbol) (gostream_trades_missing{") and target["legendFormat"] == "{{symbol}}"
    # Panels do not overlap on Grafana's 24-column grid.
    cells = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & mine, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells |= mine


def test_strimzi_jmx_exporter_rules_are_the_shared_file(render):
    docs = render("defaults")
    cm = chartlib.by_name(docs, "ConfigMap", f"{RELEASE}-kafka-metrics")
    assert yaml.safe_load(cm["data"]["kafka-metrics-config.yml"]) == yaml.safe_load((FILES / "kafka-jmx-exporter.yaml").read_text())


def test_the_disk_alerts_know_the_questdb_volume_size(helm):
    """The consumer exports QuestDB's volume size from questdb.persistence.size, in the form
    the chart's schema allows, read the way the consumer reads it."""
    docs = helm.template(sets=["questdb.persistence.size=250Gi"])
    size = chartlib.by_name(docs, "ConfigMap", f"{RELEASE}-consumer")["data"]["QUESTDB_VOLUME_SIZE"]
    assert volume_bytes(size) == 250 * 2**30


def test_with_questdb_auth_the_questdb_scrape_sends_the_admin_credentials(helm, crd_schemas):
    """QuestDB asks for them on /metrics too (tests/common/test_questdb_auth.py); the
    ServiceMonitor's basicAuth must name Secret keys the release really has, holding the
    admin's name and password."""
    docs = helm.template(sets=["metrics.serviceMonitor.enabled=true", "questdb.auth.httpBasicAuth=true",
                               "questdb.auth.adminUser=ops", "questdb.auth.adminPassword=s3cret"])
    monitor = chartlib.by_name(docs, "ServiceMonitor", f"{RELEASE}-questdb")
    crd_schemas.validate(monitor)
    (endpoint,) = monitor["spec"]["endpoints"]
    secrets = {d["metadata"]["name"]: d for d in chartlib.kind_of(docs, "Secret")}

    def value(ref: dict) -> str:
        secret = secrets[ref["name"]]
        if ref["key"] in secret.get("stringData", {}):
            return secret["stringData"][ref["key"]]
        return base64.b64decode(secret["data"][ref["key"]]).decode()

    assert value(endpoint["basicAuth"]["username"]) == "ops"
    assert value(endpoint["basicAuth"]["password"]) == "s3cret"
    # Without auth, no credentials are sent and no extra Secret is rendered.
    plain = helm.template(sets=["metrics.serviceMonitor.enabled=true"])
    assert "basicAuth" not in chartlib.by_name(plain, "ServiceMonitor", f"{RELEASE}-questdb")["spec"]["endpoints"][0]
    assert f"{RELEASE}-questdb-scrape" not in {d["metadata"]["name"] for d in chartlib.kind_of(plain, "Secret")}

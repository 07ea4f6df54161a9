"""The shared alerting rules: valid for promtool, unit-tested, and covering what the
platform promises to alert on."""

from __future__ import annotations

import subprocess

import yaml

from tests.monitoring.conftest import RULE_TESTS, RULES, dashboard_exprs, metric_names, rules

REQUIRED = {
    "GoStreamFeedStale",  # feed stale
    "GoStreamProducerDisconnected",  # producer disconnected from the exchange
    "GoStreamConsumerLagHigh",  # consumer lag high
    "GoStreamDeadLettersGrowing",  # DLQ growing
    "GoStreamQuestDBWriteErrors",  # QuestDB write errors
    "GoStreamTargetDown",  # a target down
    "GoStreamTradesMissing",  # trade ids missing from the store (the completeness audit)
}


def test_promtool_check_rules(promtool):
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_rule_unit_tests(promtool):
    result = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_catches_a_broken_rule(promtool, tmp_path):
    """The check above can fail: a typo in an expression is reported."""
    broken = yaml.safe_load(RULES.read_text())
    broken["groups"][0]["rules"][0]["expr"] = "up{component=~\"producer\" == 0"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_the_promised_alerts_exist_with_severity_and_text():
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert REQUIRED <= set(alerts), REQUIRED - set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_trades_missing_alert_names_the_symbol_and_points_at_completeness():
    (rule,) = [rule for rule in rules() if rule.get("alert") == "GoStreamTradesMissing"]
    assert metric_names(rule["expr"]) == {"gostream_trades_missing"} and rule["for"] == "15m"
    assert rule["labels"]["severity"] == "warning"
    for text in rule["annotations"].values():
        assert "{{ $labels.symbol }}" in text
    assert "/completeness?symbol={{ $labels.symbol }}" in rule["annotations"]["description"]


def test_every_alert_is_unit_tested_firing_and_quiet():
    fired, quiet = set(), set()
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts - fired == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown staying quiet"


def test_metric_name_extraction():
    """The helper the live name check relies on finds names, and only names."""
    expr = ('histogram_quantile(0.95, sum by (le, endpoint) (rate(gostream_api_request_duration_seconds_bucket'
            '{namespace=~"$namespace", status=~"5.."}[$__rate_interval]))) / on(job) group_left '
            'sum without (instance) (up{component="api"}) > bool 0 or vector(0)')
    assert metric_names(expr) == {"gostream_api_request_duration_seconds_bucket", "up"}
    names = set().union(*(metric_names(rule["expr"]) for rule in rules()), *map(metric_names, dashboard_exprs()))
    assert {"up", "gostream_producer_feed_staleness_seconds", "gostream_consumer_lag_records",
            "gostream_consumer_dlq_records_total", "kafka_server_replicamanager_underreplicatedpartitions"} <= names

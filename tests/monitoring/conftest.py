"""Monitoring tests: promtool on the shared rules file, and a real Prometheus (Debian's
package, `make monitoring-deps`) scraping the real pipeline."""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from stack import components as c

HERE = Path(__file__).resolve().parent
RULES = c.PROMETHEUS_RULES
RULE_TESTS = HERE / "rules_test.yaml"
DASHBOARD = c.MONITORING_FILES / "grafana-dashboard.json"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` not found: run `make monitoring-deps` (installs Debian's prometheus package)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool")


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


# -- PromQL: the metric names an expression reads --------------------------------------------
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
             "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are neither functions (followed
    by a parenthesis), keywords, label names (inside braces or by/on/... lists) nor text in
    quotes. Grafana's $variables are ignored."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name, rest = match.group(0), text[match.end():].lstrip()
        if rest.startswith("(") or name.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression as Prometheus can run it: Grafana's variables filled in."""
    return expr.replace("$__rate_interval", "1m").replace("$namespace", ".*")


# -- Prometheus' HTTP API ---------------------------------------------------------------------
class PrometheusAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params) -> dict:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
            raise AssertionError(f"{path} {params}: HTTP {exc.code}: {body.get('error')}") from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query (None when there is no series)."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, f"{expr} gave {len(result)} series"
        return float(result[0]["value"][1])

    def targets(self) -> dict[str, str]:
        """component -> health of each active scrape target."""
        active = self.get("/api/v1/targets", state="active")["activeTargets"]
        return {t["labels"].get("component", t["labels"]["job"]): t["health"] for t in active}

    def names(self) -> set[str]:
        return set(self.get("/api/v1/label/__name__/values"))

"""values.schema.json and the values table of the chart's README are generated from values.yaml
(`make chart-docs`): the committed files must be what the generators make of it now."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.charts import chartlib

GENERATED = ("values.schema.json", "README.md")
TOOLS = ("helm-values-schema-json", "helm-docs")


def _generate(tmp_path: Path, edit=None) -> Path:
    """Run `make chart-docs` (the one place that says how) on a copy of the chart."""
    for tool in TOOLS:
        if not os.access(chartlib.HELM_PATH.parent / tool, os.X_OK):
            pytest.fail(f"{tool} not found in {chartlib.HELM_PATH.parent}: run `make chart-tools` first")
    chart = tmp_path / "gostream"
    shutil.copytree(chartlib.CHART, chart)
    if edit:
        edit(chart)
    result = subprocess.run(["make", "-s", "chart-docs", f"CHART_DIR={chart}"], cwd=chartlib.REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return chart


@pytest.mark.parametrize("name", GENERATED)
def test_generated_files_are_current(tmp_path, name):
    chart = _generate(tmp_path)
    fresh, committed = (chart / name).read_text(), (chartlib.CHART / name).read_text()
    assert fresh == committed, f"charts/gostream/{name} is stale: run `make chart-docs` and commit the result"


def test_a_changed_values_file_changes_both(tmp_path):
    """The comparison above can fail: a new key with its description reaches both files."""
    def add_key(chart: Path) -> None:
        values = chart / "values.yaml"
        values.write_text(values.read_text() + "\n# -- A setting added after the docs were generated.\nlateSetting: 3 # @schema minimum: 1\n")

    chart = _generate(tmp_path, add_key)
    schema = json.loads((chart / "values.schema.json").read_text())
    assert schema["properties"]["lateSetting"] == {
        "description": "A setting added after the docs were generated.", "type": "integer", "minimum": 1}
    assert "| lateSetting | int | `3` | A setting added after the docs were generated. |" in (chart / "README.md").read_text()
    for name in GENERATED:
        assert (chart / name).read_text() != (chartlib.CHART / name).read_text()


def test_every_value_is_described():
    """Each key of the README's table has a description (helm-docs leaves it empty otherwise),
    except image repositories and tags, which say what they are."""
    rows = [line.split(" | ") for line in (chartlib.CHART / "README.md").read_text().splitlines() if line.startswith("| ")]
    undescribed = [r[0].lstrip("| ") for r in rows if len(r) >= 4 and r[0] != "| Key" and not r[3].strip(" |")]
    allowed = {k for k in undescribed if k.endswith((".image.repository", ".image.tag"))}
    assert sorted(set(undescribed) - allowed) == []

"""Fixtures for the Helm chart tests: the pinned helm, the rendered variants, the CRD schemas.

Everything runs offline: helm is built by `make chart-tools` into .cache/bin, the Kubernetes
schemas ship with the kubernetes-validate package, and the CRDs come from the shared folder
named by GOSTREAM_CRD_SCHEMAS (default: <repo>/../shared/schemas).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.charts import chartlib


@pytest.fixture(scope="session")
def helm() -> chartlib.Helm:
    return chartlib.helm()


@pytest.fixture(scope="session")
def crd_schemas() -> chartlib.CRDSchemas:
    return chartlib.crd_schemas()


@pytest.fixture(scope="session")
def render(helm: chartlib.Helm):
    """render(variant, kube_version=chartlib.MIN_KUBE) -> list of manifests (cached)."""
    return helm.render_variant


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return chartlib.REPO


def pytest_report_header(config) -> list[str]:
    lines = [f"chart variants: {', '.join(chartlib.VARIANTS)}"]
    lines.append(f"kubernetes schema versions: {', '.join(chartlib.KUBE_VERSIONS)}")
    lines.append(f"CRD schemas: {os.environ.get('GOSTREAM_CRD_SCHEMAS', chartlib.DEFAULT_CRD_DIR)}")
    return lines

"""Fixtures for the chart-on-a-real-control-plane tests: one etcd + kube-apiserver +
kube-controller-manager per session (built by `make k8s-tools`), the Strimzi and
prometheus-operator CRDs applied to it, and helm pointed at it.

A missing binary fails the session with the make target that builds it; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.charts import chartlib
from tests.k8s import cluster

ARTIFACTS = cluster.REPO / "test-artifacts" / "k8s"
CRD_ROOT = Path(os.environ.get("GOSTREAM_CRD_SCHEMAS") or cluster.REPO.parent / "shared" / "schemas") / "crds"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory) -> cluster.ControlPlane:
    try:
        cluster.ensure_binaries()
        cluster.helm_binary()
        plane = cluster.ControlPlane(workdir=tmp_path_factory.mktemp("k8s"), logdir=ARTIFACTS)
        plane.start()
    except cluster.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    except Exception:
        # leave the logs in test-artifacts/k8s and stop what did start
        plane.stop()
        raise
    try:
        apply_crds(plane.kube)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube(control_plane) -> cluster.Kube:
    return control_plane.kube


def apply_crds(kube: cluster.Kube) -> list[str]:
    """Create every CRD under CRD_ROOT and wait until each is Established."""
    files = sorted(CRD_ROOT.glob("*/*.yaml"))
    if not files:
        pytest.fail(f"no CRDs under {CRD_ROOT} (set GOSTREAM_CRD_SCHEMAS to the shared schemas folder)",
                    pytrace=False)
    crds = [doc for path in files for doc in yaml.safe_load_all(path.read_text())
            if doc and doc.get("kind") == "CustomResourceDefinition"]
    # KafkaUser's CRD is not in the shared folder: served from chartlib's subset of it.
    if not any(crd["spec"]["names"]["kind"] == "KafkaUser" for crd in crds):
        crds.append(chartlib.kafkauser_crd())
    names, lists = [], []
    for doc in crds:
        kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
        names.append(doc["metadata"]["name"])
        spec = doc["spec"]
        lists += [f"/apis/{spec['group']}/{v['name']}/{spec['names']['plural']}"
                  for v in spec["versions"] if v.get("served")]

    def established() -> bool:
        for name in names:
            crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            # (a CRD just created may answer "conditions": null)
            conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
            if conditions.get("Established") != "True":
                return False
        return True

    cluster.wait_for(f"CRDs {names} to be Established", established, 60)
    # Established is not yet served: lists answer 429 until the storage is initialised
    for path in lists:
        cluster.wait_for(f"{path} to be served", lambda: kube.get(path) is not None, 60)
    return names


@dataclass
class Helm:
    path: Path
    kubeconfig: Path
    home: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        result = subprocess.run([str(self.path), *args], capture_output=True, text=True, env=env, timeout=300)
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}",
                        pytrace=False)
        return result


@pytest.fixture(scope="session")
def helm(control_plane, tmp_path_factory) -> Helm:
    return Helm(cluster.helm_binary(), control_plane.kubeconfig, tmp_path_factory.mktemp("helm-home"))

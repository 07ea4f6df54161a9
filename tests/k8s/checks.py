"""What the tests ask of the control plane: did the controllers turn every workload into
Pods the namespace's Pod Security level admits, and is a namespace empty again."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tests.k8s.cluster import ApiError, Kube

WORKLOAD_KINDS = ("ReplicaSet", "StatefulSet", "Deployment")
REVISION = "deployment.kubernetes.io/revision"


class NotAdmitted(AssertionError):
    """A controller could not create a Pod (FailedCreate), or the API refused one."""


def restricted_namespace(kube: Kube, name: str) -> dict:
    """Create a namespace that enforces (and warns and audits) the restricted Pod Security level."""
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
    return kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": name, "labels": labels}})


def _owned_by(obj: dict, owner: dict) -> bool:
    return any(ref.get("uid") == owner["metadata"]["uid"] for ref in obj["metadata"].get("ownerReferences", []))


def workload_warnings(kube: Kube, namespace: str) -> list[str]:
    """Warning events about ReplicaSets, StatefulSets and Deployments (FailedCreate and co)."""
    return [
        f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}: {e.get('reason')}: {e.get('message')}"
        for e in kube.items(f"/api/v1/namespaces/{namespace}/events")
        if e.get("type") == "Warning" and e["involvedObject"].get("kind") in WORKLOAD_KINDS
    ]


@dataclass
class Workloads:
    deployments: dict[str, int] = field(default_factory=dict)   # name -> pods of its current ReplicaSet
    statefulsets: dict[str, int] = field(default_factory=dict)  # name -> pods
    claims: set[str] = field(default_factory=set)               # PVCs the StatefulSets created and keep


def _pending(kube: Kube, namespace: str, out: Workloads) -> list[str]:
    apps = f"/apis/apps/v1/namespaces/{namespace}"
    deployments = kube.items(f"{apps}/deployments")
    replicasets = kube.items(f"{apps}/replicasets")
    statefulsets = kube.items(f"{apps}/statefulsets")
    pods = kube.items(f"/api/v1/namespaces/{namespace}/pods")
    pending: list[str] = []

    for rs in replicasets:
        for cond in rs.get("status", {}).get("conditions", []):
            if cond["type"] == "ReplicaFailure" and cond["status"] == "True":
                raise NotAdmitted(f"ReplicaSet {rs['metadata']['name']}: {cond.get('reason')}: {cond.get('message')}")

    for d in deployments:
        name = d["metadata"]["name"]
        revision = d["metadata"].get("annotations", {}).get(REVISION)
        if d.get("status", {}).get("observedGeneration") != d["metadata"]["generation"] or revision is None:
            pending.append(f"Deployment {name}: not yet observed by the deployment controller")
            continue
        current = [rs for rs in replicasets if _owned_by(rs, d)
                   and rs["metadata"].get("annotations", {}).get(REVISION) == revision]
        if not current:
            pending.append(f"Deployment {name}: no ReplicaSet for revision {revision}")
            continue
        rs = current[0]
        want = rs["spec"].get("replicas", 0)
        have = [p for p in pods if _owned_by(p, rs)]
        if want < 1 or len(have) < want:
            pending.append(f"Deployment {name}: ReplicaSet {rs['metadata']['name']} has {len(have)} of {want} pods")
            continue
        out.deployments[name] = len(have)

    for s in statefulsets:
        name = s["metadata"]["name"]
        have = [p for p in pods if _owned_by(p, s)]
        # OrderedReady creates pod 0 and waits for it to be Ready, which it never is without a
        # kubelet; Parallel creates them all.
        want = s["spec"].get("replicas", 1) if s["spec"].get("podManagementPolicy") == "Parallel" else 1
        if len(have) < want:
            pending.append(f"StatefulSet {name}: {len(have)} of {want} pods")
            continue
        out.statefulsets[name] = len(have)
        policy = s["spec"].get("persistentVolumeClaimRetentionPolicy", {}).get("whenDeleted", "Retain")
        if policy == "Delete":
            continue  # the claims go with the StatefulSet
        for template in s["spec"].get("volumeClaimTemplates", []):
            for pod in have:
                out.claims.add(f"{template['metadata']['name']}-{pod['metadata']['name']}")
    if not deployments and not statefulsets:
        pending.append("no Deployment or StatefulSet yet")
    return pending


def wait_workloads_admitted(kube: Kube, namespace: str, timeout: float = 120) -> Workloads:
    """Wait until every Deployment's current ReplicaSet and every StatefulSet has its Pods.
    Fails at once on a FailedCreate (or any other Warning event) about a workload."""
    deadline = time.monotonic() + timeout
    while True:
        warnings = workload_warnings(kube, namespace)
        if warnings:
            raise NotAdmitted("the controllers could not create pods:\n  " + "\n  ".join(warnings))
        out = Workloads()
        pending = _pending(kube, namespace, out)
        if not pending:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f} s, in namespace {namespace}:\n  " + "\n  ".join(pending))
        time.sleep(1)


def dry_run_pod(kube: Kube, namespace: str, name: str, spec: dict, labels: dict | None = None) -> None:
    """Ask the API server (all admission included) whether it would create this Pod."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}
    try:
        kube.create(f"/api/v1/namespaces/{namespace}/pods", pod, dryRun="All")
    except ApiError as exc:
        raise NotAdmitted(f"pod {name} refused: {exc}") from None


def dry_run_templates(kube: Kube, namespace: str) -> list[str]:
    """Dry-run a Pod from every Deployment and StatefulSet template in the namespace."""
    names = []
    for kind in ("deployments", "statefulsets"):
        for w in kube.items(f"/apis/apps/v1/namespaces/{namespace}/{kind}"):
            template = w["spec"]["template"]
            spec = dict(template["spec"])
            # as the StatefulSet controller does: a volume for each claim template
            claims = [{"name": t["metadata"]["name"],
                       "persistentVolumeClaim": {"claimName": f"{t['metadata']['name']}-{w['metadata']['name']}-0"}}
                      for t in w["spec"].get("volumeClaimTemplates", [])]
            spec["volumes"] = list(spec.get("volumes", [])) + claims
            name = f"dry-run-{w['metadata']['name']}"
            dry_run_pod(kube, namespace, name, spec, template["metadata"].get("labels"))
            names.append(name)
    return names


# What a namespace may hold that belongs to no release.
def _ignored(resource: str, obj: dict) -> bool:
    name = obj["metadata"]["name"]
    if resource.endswith("/events"):
        return True
    if resource == "/api/v1/serviceaccounts" and name == "default":
        return True
    if resource == "/api/v1/configmaps" and name == "kube-root-ca.crt":
        return True
    return False


def leftovers(kube: Kube, namespace: str) -> list[str]:
    """Everything in the namespace except events and what Kubernetes itself puts there."""
    return sorted(f"{resource}/{obj['metadata']['name']}" for resource, obj in kube.objects_in_namespace(namespace)
                  if not _ignored(resource, obj))


def cluster_leftovers(kube: Kube, release: str) -> list[str]:
    """Cluster-scoped objects labelled with the release."""
    return sorted(f"{resource}/{obj['metadata']['name']}"
                  for resource, obj in kube.cluster_objects(f"app.kubernetes.io/instance={release}"))

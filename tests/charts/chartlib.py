"""Helpers shared by the chart tests: running helm, the chart variants, schema validation,
and a small NetworkPolicy evaluator."""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest
import yaml

try:
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate import utils as kv_utils
except ImportError as exc:  # pragma: no cover - exercised only on a broken environment
    raise ImportError(
        f"{exc}: the chart tests need the dev extra (kubernetes-validate, jsonschema, pyyaml): "
        "run `pip install -e .[dev]` in .venv"
    ) from exc

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "gostream"
HELM_PATH = REPO / ".cache" / "bin" / "helm"
DEFAULT_CRD_DIR = REPO.parent / "shared" / "schemas"
RELEASE = "gostream"
NAMESPACE = "gostream"

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the
# installed kubernetes-validate knows.
MIN_KUBE = "1.30.0"
NEWEST_KUBE = kv_utils.latest_version()
KUBE_VERSIONS = (MIN_KUBE, NEWEST_KUBE) if NEWEST_KUBE != MIN_KUBE else (MIN_KUBE,)

# Every ci/*-values.yaml is a variant, plus the values skaffold uses on kind.
VARIANTS: dict[str, tuple[Path, ...]] = {
    path.name.removesuffix("-values.yaml"): (path,) for path in sorted((CHART / "ci").glob("*-values.yaml"))
}
VARIANTS["k8s-dev"] = (REPO / "k8s-dev" / "values-dev.yaml",)
VARIANTS["k8s-dev-monitoring"] = (REPO / "k8s-dev" / "values-dev.yaml", REPO / "k8s-dev" / "values-monitoring.yaml")

# APIs a cluster may serve beyond the built-in ones, for the templates that render only
# where they are served (the Gateway API's HTTPRoute): `helm template` is told they exist.
EXTRA_API_VERSIONS = ("gateway.networking.k8s.io/v1/HTTPRoute",)

SERVICES = ("producer", "consumer", "api", "frontend")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}


class HelmFailed(Exception):
    def __init__(self, args: list[str], result: subprocess.CompletedProcess):
        self.stderr = result.stderr
        self.stdout = result.stdout
        super().__init__(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr or result.stdout}")


@dataclass(eq=False)
class Helm:
    path: Path
    home: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            # Keep helm away from the user's config, caches and clusters.
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "KUBECONFIG": str(self.home / "no-kubeconfig"),
        }
        result = subprocess.run(
            [str(self.path), *args], capture_output=True, text=True, env=env, timeout=120, cwd=REPO
        )
        if check and result.returncode != 0:
            raise HelmFailed(list(args), result)
        return result

    def template(self, *values: Path, kube_version: str = MIN_KUBE, sets: Iterable[str] = (), release: str = RELEASE,
                 api_versions: Iterable[str] = EXTRA_API_VERSIONS) -> list[dict]:
        args = ["template", release, str(CHART), "--namespace", NAMESPACE, "--kube-version", kube_version]
        for api_version in api_versions:
            args += ["--api-versions", api_version]
        for path in values:
            args += ["-f", str(path)]
        for item in sets:
            args += ["--set", item]
        out = self.run(*args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    @functools.lru_cache(maxsize=None)
    def render_variant(self, variant: str, kube_version: str = MIN_KUBE) -> tuple[dict, ...]:
        return tuple(self.template(*VARIANTS[variant], kube_version=kube_version))


def helm() -> Helm:
    if not os.access(HELM_PATH, os.X_OK):
        pytest.fail(f"helm not found at {HELM_PATH}: run `make chart-tools` first (it builds the pinned helm with go install)")
    home = Path(tempfile.mkdtemp(prefix="gostream-helm-"))
    return Helm(HELM_PATH, home)


# ---------------------------------------------------------------------------------------------
# Object helpers


def kind_of(docs: Iterable[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def by_name(docs: Iterable[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def is_hook(doc: dict) -> bool:
    return "helm.sh/hook" in (doc.get("metadata", {}).get("annotations") or {})


@dataclass
class PodTemplate:
    owner: dict
    metadata: dict
    spec: dict

    @property
    def name(self) -> str:
        return f"{self.owner['kind']}/{self.owner['metadata']['name']}"

    @property
    def labels(self) -> dict:
        return self.metadata.get("labels") or {}

    @property
    def annotations(self) -> dict:
        return self.metadata.get("annotations") or {}

    @property
    def hook(self) -> bool:
        return is_hook(self.owner)

    def containers(self) -> list[dict]:
        return list(self.spec.get("initContainers") or []) + list(self.spec["containers"])

    def ports(self) -> dict[str, int]:
        return {p.get("name", str(p["containerPort"])): p["containerPort"] for c in self.spec["containers"] for p in c.get("ports", [])}


def pod_templates(docs: Iterable[dict]) -> Iterator[PodTemplate]:
    for doc in docs:
        kind = doc.get("kind")
        if kind == "Pod":
            yield PodTemplate(doc, doc["metadata"], doc["spec"])
        elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}:
            tpl = doc["spec"]["template"]
            yield PodTemplate(doc, tpl["metadata"], tpl["spec"])
        elif kind == "Job":
            tpl = doc["spec"]["template"]
            yield PodTemplate(doc, tpl["metadata"], tpl["spec"])


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against a label set."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Schema validation


def validate_builtin(doc: dict, kube_version: str) -> None:
    """Validate a built-in object against the strict Kubernetes schema of that version."""
    kubernetes_validate.validate(doc, kube_version, strict=True)


@dataclass
class CRDSchemas:
    root: Path
    schemas: dict[tuple[str, str], dict]  # (apiVersion, kind) -> openAPIV3Schema

    def validate(self, doc: dict) -> None:
        key = (doc["apiVersion"], doc["kind"])
        if key not in self.schemas and key not in SUBSETS:
            raise AssertionError(f"no CRD schema for {key[1]} {key[0]} under {self.root}")
        validator = jsonschema.Draft7Validator(self.schemas.get(key) or SUBSETS[key])
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]]
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']} does not match its CRD:\n" + "\n".join(lines))


# The Gateway API CRDs are not among the shared schemas: an HTTPRoute is checked against this
# structural subset of gateway.networking.k8s.io/v1 HTTPRoute (the fields the chart writes,
# their types, enums and limits as in the upstream CRD, anything else refused). Where the
# shared folder does hold the CRD, the CRD's own schema is used instead.
_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_HOSTNAME = {"type": "string", "minLength": 1, "maxLength": 253,
             "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"}
_DURATION = {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_PATH = {"type": "string", "maxLength": 1024, "pattern": "^/"}


def _strict(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


HTTPROUTE_STRUCTURE = _strict(
    {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "HTTPRoute"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": _strict(
            {
                "parentRefs": {"type": "array", "minItems": 1, "maxItems": 32, "items": _strict(
                    {"group": {"type": "string"}, "kind": {"type": "string"}, "name": _NAME,
                     "namespace": {"type": "string", "maxLength": 63}, "sectionName": {"type": "string", "maxLength": 253},
                     "port": _PORT}, ("name",))},
                "hostnames": {"type": "array", "maxItems": 16, "items": _HOSTNAME},
                "rules": {"type": "array", "minItems": 1, "maxItems": 16, "items": _strict(
                    {
                        "matches": {"type": "array", "maxItems": 64, "items": _strict(
                            {"path": _strict({"type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                                              "value": _PATH})})},
                        "filters": {"type": "array", "maxItems": 16, "items": _strict(
                            {"type": {"enum": ["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror",
                                               "RequestRedirect", "URLRewrite", "ExtensionRef"]},
                             "urlRewrite": _strict({"hostname": _HOSTNAME, "path": _strict(
                                 {"type": {"enum": ["ReplaceFullPath", "ReplacePrefixMatch"]},
                                  "replaceFullPath": _PATH, "replacePrefixMatch": _PATH}, ("type",))})},
                            ("type",))},
                        "backendRefs": {"type": "array", "maxItems": 16, "items": _strict(
                            {"group": {"type": "string"}, "kind": {"type": "string"}, "name": _NAME,
                             "namespace": {"type": "string"}, "port": _PORT,
                             "weight": {"type": "integer", "minimum": 0, "maximum": 1000000}}, ("name",))},
                        "timeouts": _strict({"request": _DURATION, "backendRequest": _DURATION}),
                    })},
            },
            ("parentRefs", "rules"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)


def validate_httproute(doc: dict, crds: "CRDSchemas | None" = None) -> str:
    """Check an HTTPRoute against its CRD when the shared folder has it, else structurally;
    return which (for the test's report). Raises AssertionError listing the problems."""
    if crds is not None and (doc["apiVersion"], doc["kind"]) in crds.schemas:
        crds.validate(doc)
        return "crd"
    errors = sorted(jsonschema.Draft7Validator(HTTPROUTE_STRUCTURE).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]]
        raise AssertionError(f"HTTPRoute/{doc['metadata']['name']} is not a valid HTTPRoute:\n" + "\n".join(lines))
    for rule in doc["spec"]["rules"]:  # the CRD's CEL rules the chart could break
        for f in rule.get("filters", []):
            if f["type"] == "URLRewrite" and f["urlRewrite"]["path"]["type"] == "ReplacePrefixMatch":
                assert all(m.get("path", {}).get("type") == "PathPrefix" for m in rule.get("matches", [])), (
                    "ReplacePrefixMatch needs PathPrefix matches")
                assert "replacePrefixMatch" in f["urlRewrite"]["path"], "ReplacePrefixMatch without a value"
    return "structure"


# Strimzi's KafkaUser CRD is not among the shared schemas either, and no registry here serves
# it (Maven Central's io.strimzi:api jar holds no CRD files, npm only compiled validators, the
# Go proxy refuses the repository). A KafkaUser is checked against this structural subset of
# kafka.strimzi.io/v1 KafkaUser as Strimzi 1.2.0 defines it (every field of its spec, their
# types, enums and required ones; anything else refused), and tests/k8s serves the same subset
# as the CRD (kafkauser_crd). What the ACLs allow is proven on a real broker instead
# (tests/common/test_kafka_security.py). Where the shared folder holds the CRD, it is used.
_STR = {"type": "string"}
_INT = {"type": "integer"}
_ACL_OPERATIONS = ["Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "AlterConfigs",
                   "DescribeConfigs", "IdempotentWrite", "All"]
KAFKAUSER_SPEC = _strict(
    {
        "authentication": _strict(
            {"type": {"type": "string", "enum": ["tls", "tls-external", "scram-sha-512"]},
             "password": _strict({"valueFrom": _strict({"secretKeyRef": _strict(
                 {"key": _STR, "name": _STR, "optional": {"type": "boolean"}})})}, ("valueFrom",)),
             "renewalDays": _INT, "validityDays": _INT},
            ("type",)),
        "authorization": _strict(
            {"type": {"type": "string", "enum": ["simple"]},
             "acls": {"type": "array", "items": _strict(
                 {"type": {"type": "string", "enum": ["allow", "deny"]},
                  "resource": _strict({"type": {"type": "string", "enum": ["topic", "group", "cluster", "transactionalId"]},
                                       "name": _STR, "patternType": {"type": "string", "enum": ["literal", "prefix"]}},
                                      ("type",)),
                  "host": _STR,
                  "operations": {"type": "array", "items": {"type": "string", "enum": _ACL_OPERATIONS}}},
                 ("resource", "operations"))}},
            ("acls", "type")),
        "quotas": _strict({"producerByteRate": _INT, "consumerByteRate": _INT, "requestPercentage": _INT,
                           "controllerMutationRate": {"type": "number"}}),
        "template": _strict({"secret": _strict({"metadata": _strict(
            {"labels": {"type": "object", "additionalProperties": _STR},
             "annotations": {"type": "object", "additionalProperties": _STR}})})}),
    }
)
KAFKAUSER_STRUCTURE = _strict(
    {"apiVersion": {"const": "kafka.strimzi.io/v1"}, "kind": {"const": "KafkaUser"},
     "metadata": {"type": "object", "required": ["name"]}, "spec": KAFKAUSER_SPEC},
    ("apiVersion", "kind", "metadata", "spec"),
)
# (apiVersion, kind) -> the subset used where the shared folder has no CRD
SUBSETS = {("kafka.strimzi.io/v1", "KafkaUser"): KAFKAUSER_STRUCTURE}


def _crd_schema(schema: Any) -> Any:
    """A subset above as a CRD's structural schema: the API server refuses `additionalProperties:
    false` beside `properties` (it prunes unknown fields instead) and `required: []`."""
    if isinstance(schema, dict):
        out = {k: _crd_schema(v) for k, v in schema.items()
               if not (k == "additionalProperties" and v is False) and not (k == "required" and not v)}
        return out
    return [_crd_schema(v) for v in schema] if isinstance(schema, list) else schema


def kafkauser_crd() -> dict:
    """A KafkaUser CustomResourceDefinition serving the subset above (for tests/k8s)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "kafkausers.kafka.strimzi.io"},
        "spec": {"group": "kafka.strimzi.io", "scope": "Namespaced",
                 "names": {"kind": "KafkaUser", "listKind": "KafkaUserList", "plural": "kafkausers",
                           "singular": "kafkauser", "shortNames": ["ku"], "categories": ["strimzi"]},
                 "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {
                                   "type": "object",
                                   "properties": {"spec": _crd_schema(KAFKAUSER_SPEC),
                                                  "status": {"type": "object",
                                                             "x-kubernetes-preserve-unknown-fields": True}}}}}]},
    }


def strict_openapi(schema: Any) -> Any:
    """Turn a CRD's structural schema into a JSON schema that rejects unknown fields, as the
    API server's pruning would silently drop them (a typo would be lost, not reported)."""
    if isinstance(schema, list):
        return [strict_openapi(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_openapi(v) for k, v in schema.items() if k not in {"nullable"}}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def crd_schemas() -> CRDSchemas:
    root = Path(os.environ.get("GOSTREAM_CRD_SCHEMAS", str(DEFAULT_CRD_DIR)))
    crd_files = sorted(root.glob("crds/**/*.yaml")) if root.is_dir() else []
    if not crd_files:
        pytest.fail(
            f"CRD schemas not found under {root}/crds: set GOSTREAM_CRD_SCHEMAS to the folder holding "
            "crds/strimzi-*/ and crds/prometheus-operator-*/ (default <repo>/../shared/schemas)"
        )
    schemas: dict[tuple[str, str], dict] = {}
    for path in crd_files:
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schema = version["schema"]["openAPIV3Schema"]
                    schemas[(f"{group}/{version['name']}", kind)] = strict_openapi(copy.deepcopy(schema))
    return CRDSchemas(root, schemas)


# ---------------------------------------------------------------------------------------------
# NetworkPolicy evaluation (enough of the semantics for this chart: pod/namespace selectors,
# ipBlocks, ports; all peers live in the release namespace unless a namespaceSelector says so)


@dataclass(frozen=True)
class Endpoint:
    labels: tuple[tuple[str, str], ...]
    namespace_labels: tuple[tuple[str, str], ...] = (("kubernetes.io/metadata.name", NAMESPACE),)
    ip: str | None = None  # set for destinations outside the cluster

    @staticmethod
    def pod(labels: dict, namespace: str = NAMESPACE) -> "Endpoint":
        return Endpoint(tuple(sorted(labels.items())), (("kubernetes.io/metadata.name", namespace),))

    @staticmethod
    def external(ip: str) -> "Endpoint":
        return Endpoint((), (), ip)


def _peer_matches(peer: dict, other: Endpoint) -> bool:
    import ipaddress

    if "ipBlock" in peer:
        if other.ip is None:
            return False
        block = peer["ipBlock"]
        addr = ipaddress.ip_address(other.ip)
        if addr not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(addr in ipaddress.ip_network(e) for e in block.get("except", []))
    if other.ip is not None:
        return False
    labels, ns_labels = dict(other.labels), dict(other.namespace_labels)
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], ns_labels):
            return False
    elif ns_labels.get("kubernetes.io/metadata.name") != NAMESPACE:
        return False
    if "podSelector" in peer:
        return selector_matches(peer["podSelector"], labels)
    return True


def _rule_allows(rule: dict, peer_key: str, other: Endpoint, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if ports and not any(p.get("protocol", "TCP") == protocol and p.get("port") in (port, None) for p in ports):
        return False
    peers = rule.get(peer_key)
    if not peers:  # absent or empty: every peer
        return True
    return any(_peer_matches(p, other) for p in peers)


def _direction_allows(policies: list[dict], subject: Endpoint, direction: str, other: Endpoint, port: int, protocol: str) -> bool:
    if subject.ip is not None:  # outside the cluster: no NetworkPolicy applies
        return True
    subject_labels = dict(subject.labels)
    selecting = [
        p for p in policies
        if selector_matches(p["spec"]["podSelector"], subject_labels)
        and direction in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True
    key, peer_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any(_rule_allows(rule, peer_key, other, port, protocol) for p in selecting for rule in p["spec"].get(key) or [])


def flow_allowed(policies: list[dict], src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    """True when src's egress policies and dst's ingress policies both admit the connection."""
    return _direction_allows(policies, src, "Egress", dst, port, protocol) and _direction_allows(
        policies, dst, "Ingress", src, port, protocol
    )


def dump(doc: Any) -> str:
    return json.dumps(doc, indent=1, sort_keys=True)[:2000]

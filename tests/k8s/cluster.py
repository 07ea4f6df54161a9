"""A real Kubernetes control plane on loopback for the chart tests: etcd, kube-apiserver and
kube-controller-manager built by `make k8s-tools` (k8s-test/build.sh), with certificates
generated per session by the openssl command-line tool.

There is no scheduler and no kubelet: pods stay Pending, which is enough, because what the
tests check is what the API server and its admission plugins accept, and what the
controllers manage to create.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("GOSTREAM_K8S_BIN") or REPO / ".cache" / "k8s" / "bin")
HELM_PATH = REPO / ".cache" / "bin" / "helm"
KUBE_VERSION = "v1.37.2"  # what k8s-test/build.sh pins
ETCD_VERSION = "3.7.0"

# Loopback ports of this control plane, below the kernel's ephemeral range (32768+), where
# an outgoing connection could hold them; GOSTREAM_K8S_PORT_OFFSET shifts them all, so two
# sessions can run side by side.
_OFFSET = int(os.environ.get("GOSTREAM_K8S_PORT_OFFSET") or 0)
ETCD_CLIENT_PORT = 25379 + _OFFSET
ETCD_PEER_PORT = 25380 + _OFFSET
APISERVER_PORT = 26443 + _OFFSET


@dataclass(frozen=True)
class PlanePorts:
    etcd_client: int
    etcd_peer: int
    apiserver: int

    @property
    def pid_file(self) -> Path:
        """The process ids of a running control plane, so that a session killed before its
        teardown does not leave the next one with taken ports."""
        return REPO / ".cache" / "k8s" / f"control-plane-{self.apiserver}.pids"


PORTS = PlanePorts(ETCD_CLIENT_PORT, ETCD_PEER_PORT, APISERVER_PORT)

# The controllers the chart needs: Deployments -> ReplicaSets -> Pods, StatefulSets -> Pods
# (and their claims), the `default` ServiceAccount of new namespaces, the garbage collector
# that deletes what a deleted Deployment owned, and namespace / claim clean-up.
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "serviceaccount-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "persistentvolumeclaim-protection-controller",
)


class ToolMissing(RuntimeError):
    pass


def ensure_binaries(scripts: tuple[str, ...] = ("build.sh", "build-prometheus.sh")) -> None:
    """Have what k8s-test's ``scripts`` build in BIN_DIR: wait for the build `make test`
    started in the background (the scripts share one machine lock), copy from the machine
    cache, or build. A GOSTREAM_K8S_BIN of one's own is used as it is. skaffold, built last
    in the background, is waited for only by its own test, so the other node tests run
    while it builds on a fresh machine."""
    if os.environ.get("GOSTREAM_K8S_BIN"):
        return
    for script in scripts:
        done = subprocess.run([str(REPO / "k8s-test" / script), str(BIN_DIR)], capture_output=True, text=True)
        if done.returncode != 0:
            raise ToolMissing(f"k8s-test/{script} failed (`make k8s-tools`; the background build's log is "
                              f".cache/k8s/build.log):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def binary(name: str) -> Path:
    path = BIN_DIR / name
    if not os.access(path, os.X_OK):
        raise ToolMissing(f"{path} is missing: build it with `make k8s-tools` (k8s-test/build.sh)")
    return path


def helm_binary() -> Path:
    if not os.access(HELM_PATH, os.X_OK):
        raise ToolMissing(f"{HELM_PATH} is missing: build it with `make chart-tools`")
    return HELM_PATH


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- certificates -------------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def _ec_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path.name, cwd=path.parent)


@dataclass(frozen=True)
class Certs:
    dir: Path

    def path(self, name: str) -> Path:
        return self.dir / name


def make_certs(directory: Path, extra: dict[str, tuple[str, str, str | None]] | None = None) -> Certs:
    """A throw-away CA and the leaf certificates the control plane and its clients use;
    `extra` adds more (name: (subject, extended key usage, subjectAltName))."""
    directory.mkdir(parents=True, exist_ok=True)
    _ec_key(directory / "ca.key")
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=gostream-test-ca", "-days", "2",
             "-config", "/dev/null", "-out", "ca.crt",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
             "-addext", "subjectKeyIdentifier=hash", cwd=directory)
    leaves = {
        # name: (subject, extended key usage, subjectAltName)
        "etcd": ("/CN=etcd", "serverAuth,clientAuth", "IP:127.0.0.1,DNS:localhost"),
        "apiserver": ("/CN=kube-apiserver", "serverAuth", "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
                      "DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1"),
        "apiserver-etcd-client": ("/CN=kube-apiserver-etcd-client", "clientAuth", None),
        "admin": ("/O=system:masters/CN=gostream-test-admin", "clientAuth", None),
        "controller-manager": ("/CN=system:kube-controller-manager", "clientAuth", None),
        **(extra or {}),
    }
    for name, (subject, usage, san) in leaves.items():
        _ec_key(directory / f"{name}.key")
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid",
        ]
        if san:
            ext.append(f"subjectAltName={san}")
        (directory / f"{name}.ext").write_text("\n".join(ext) + "\n")
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", "-config", "/dev/null",
                 cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=directory)
    # The key pair that signs and verifies service account tokens.
    _ec_key(directory / "sa.key")
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)
    return Certs(directory)


def write_kubeconfig(path: Path, certs: Certs, user: str, port: int = APISERVER_PORT) -> Path:
    """A kubeconfig for helm and kube-controller-manager (JSON is valid YAML)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": f"https://127.0.0.1:{port}",
            "certificate-authority": str(certs.path("ca.crt")),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate": str(certs.path(f"{user}.crt")),
            "client-key": str(certs.path(f"{user}.key")),
        }}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
        "current-context": "test",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


# --- processes ----------------------------------------------------------------------------

@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> "Component":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; last log lines:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5,
             alive: Callable[[], None] | None = None, detail: Callable[[], Any] | None = None) -> Any:
    """Poll check() until it returns something truthy; fail with `what` (and detail()) after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        if alive is not None:
            alive()
        try:
            last = check()
            if last:
                return last
        except (OSError, ApiError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} "
                               f"(last: {detail() if detail else last!r})")
        time.sleep(interval)


# --- API client ---------------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: Any):
        self.status, self.body = status, body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path} -> {status}: {message}")


class Kube:
    """The few API calls the tests need, over HTTPS with the admin client certificate."""

    def __init__(self, certs: Certs, user: str = "admin", port: int = APISERVER_PORT):
        self.base = f"https://127.0.0.1:{port}"
        self.ctx = ssl.create_default_context(cafile=str(certs.path("ca.crt")))
        self.ctx.load_cert_chain(certs.path(f"{user}.crt"), certs.path(f"{user}.key"))
        self._resources: list[tuple[str, str, bool]] | None = None

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None,
                content_type: str = "application/json") -> Any:
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            raise ApiError(method, path, exc.code, parsed) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def get(self, path: str, **query) -> Any:
        return self.request("GET", path, query=query or None)

    def items(self, path: str, **query) -> list[dict]:
        return self.get(path, **query)["items"]

    def create(self, path: str, obj: dict, **query) -> dict:
        return self.request("POST", path, obj, query=query or None)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
            return True
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise

    def resources(self, refresh: bool = False) -> list[tuple[str, str, bool]]:
        """(group-version path, plural, namespaced) of every listable resource, by discovery."""
        if self._resources is None or refresh:
            found: list[tuple[str, str, bool]] = []
            group_versions = ["/api/v1"]
            for group in self.get("/apis")["groups"]:
                group_versions.append("/apis/" + group["preferredVersion"]["groupVersion"])
            for gv in group_versions:
                for res in self.get(gv)["resources"]:
                    if "/" in res["name"] or "list" not in res.get("verbs", []):
                        continue
                    found.append((gv, res["name"], res["namespaced"]))
            self._resources = found
        return self._resources

    def objects_in_namespace(self, namespace: str) -> Iterator[tuple[str, dict]]:
        for gv, plural, namespaced in self.resources(refresh=True):
            if namespaced:
                for item in self.items(f"{gv}/namespaces/{namespace}/{plural}"):
                    yield f"{gv}/{plural}", item

    def cluster_objects(self, label_selector: str) -> Iterator[tuple[str, dict]]:
        for gv, plural, namespaced in self.resources(refresh=True):
            if not namespaced:
                for item in self.items(f"{gv}/{plural}", labelSelector=label_selector):
                    yield f"{gv}/{plural}", item


# --- the control plane --------------------------------------------------------------------

@dataclass
class ControlPlane:
    workdir: Path
    logdir: Path
    certs: Certs | None = None
    components: list[Component] = field(default_factory=list)
    kube: Kube | None = None
    kubeconfig: Path | None = None
    # What a node (tests/k8s/node.py) adds: its ports, controllers, flags and certificates.
    ports: PlanePorts = PORTS
    controllers: tuple[str, ...] = CONTROLLERS
    authorization_mode: str = "RBAC"
    apiserver_args: tuple[str, ...] = ()
    kcm_args: tuple[str, ...] = ()
    extra_certs: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)

    def start(self) -> "ControlPlane":
        etcd, apiserver, kcm = (binary(n) for n in ("etcd", "kube-apiserver", "kube-controller-manager"))
        ports = self.ports
        stop_stale(self.ports.pid_file)
        for port in (ports.etcd_client, ports.etcd_peer, ports.apiserver):
            if port_open(port):
                raise RuntimeError(f"port {port} is taken: stop whatever listens there (an earlier test run?), "
                                   "or set GOSTREAM_K8S_PORT_OFFSET")
        self.certs = certs = make_certs(self.workdir / "pki", self.extra_certs)
        self.kubeconfig = write_kubeconfig(self.workdir / "admin.kubeconfig", certs, "admin", ports.apiserver)
        kcm_kubeconfig = write_kubeconfig(self.workdir / "controller-manager.kubeconfig", certs, "controller-manager",
                                          ports.apiserver)
        p = certs.path

        self._start(Component("etcd", [
            str(etcd), "--name", "gostream-test", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", f"https://127.0.0.1:{ports.etcd_client}",
            "--advertise-client-urls", f"https://127.0.0.1:{ports.etcd_client}",
            "--listen-peer-urls", f"http://127.0.0.1:{ports.etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{ports.etcd_peer}",
            "--initial-cluster", f"gostream-test=http://127.0.0.1:{ports.etcd_peer}",
            "--cert-file", str(p("etcd.crt")), "--key-file", str(p("etcd.key")),
            "--trusted-ca-file", str(p("ca.crt")), "--client-cert-auth",
            # a throw-away store: durability is not needed, speed is
            "--unsafe-no-fsync", "--quota-backend-bytes", str(512 * 1024 * 1024),
            "--log-level", "warn",
        ], self.logdir / "etcd.log"))
        wait_for(f"etcd on 127.0.0.1:{ports.etcd_client}", lambda: port_open(ports.etcd_client), 30,
                 alive=self._check_alive)

        self._start(Component("kube-apiserver", [
            str(apiserver),
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(ports.apiserver),
            "--etcd-servers", f"https://127.0.0.1:{ports.etcd_client}",
            "--etcd-cafile", str(p("ca.crt")), "--etcd-certfile", str(p("apiserver-etcd-client.crt")),
            "--etcd-keyfile", str(p("apiserver-etcd-client.key")),
            "--tls-cert-file", str(p("apiserver.crt")), "--tls-private-key-file", str(p("apiserver.key")),
            "--client-ca-file", str(p("ca.crt")),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(p("sa.pub")),
            "--service-account-signing-key-file", str(p("sa.key")),
            "--service-cluster-ip-range", "10.96.0.0/16",
            # the endpoints of the `kubernetes` Service may not be a loopback address, and no
            # pod would use them here
            "--endpoint-reconciler-type", "none",
            "--authorization-mode", self.authorization_mode,
            # the default admission chain (PodSecurity, ServiceAccount, LimitRanger, ...) stays on
            "--profiling=false", "--v=1",
            *self.apiserver_args,
        ], self.logdir / "kube-apiserver.log"))
        self.kube = Kube(certs, port=ports.apiserver)
        wait_for("kube-apiserver /readyz", lambda: self.kube.get("/readyz") == "ok", 120, 1, alive=self._check_alive)

        self._start(Component("kube-controller-manager", [
            str(kcm),
            "--kubeconfig", str(kcm_kubeconfig),
            "--bind-address", "127.0.0.1", "--secure-port", "0",
            "--leader-elect=false",
            # as kubeadm runs it: each controller acts as its own service account
            "--use-service-account-credentials=true",
            "--controllers", ",".join(self.controllers),
            "--concurrent-deployment-syncs", "2", "--concurrent-replicaset-syncs", "2",
            "--concurrent-statefulset-syncs", "2",
            "--profiling=false", "--v=1",
            *self.kcm_args,
        ], self.logdir / "kube-controller-manager.log"))
        # The serviceaccount controller giving `default` its ServiceAccount shows the
        # controllers run and can write.
        wait_for("kube-controller-manager (the `default` ServiceAccount in namespace default)",
                 lambda: self.kube.exists("/api/v1/namespaces/default/serviceaccounts/default"), 90, 1,
                 alive=self._check_alive)
        return self

    def _start(self, component: Component) -> None:
        self.components.append(component.start())
        pid_file = self.ports.pid_file
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text("".join(f"{c.process.pid}\n" for c in self.components))

    def _check_alive(self) -> None:
        for component in self.components:
            component.check_alive()

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop()
        self.ports.pid_file.unlink(missing_ok=True)


def stop_stale(pid_file: Path = PORTS.pid_file) -> None:
    """Stop the processes an earlier, killed session recorded, if they still run our binaries."""
    try:
        pids = [int(line) for line in pid_file.read_text().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        try:
            exe = Path(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            continue
        if exe.parent == BIN_DIR.resolve():
            os.killpg(pid, signal.SIGKILL)  # each component leads its own process group
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists() or "Z" in _proc_state(pid):
                    break
                time.sleep(0.1)
    pid_file.unlink(missing_ok=True)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""

"""A real single-node Kubernetes on this machine, for running the chart's pods: the control
plane of cluster.py plus containerd (Debian's), kubelet, kube-scheduler and kube-proxy
(built by k8s-test/build.sh), the CNI bridge and host-local plugins (Debian's
containernetworking-plugins), CoreDNS as a host process on the bridge's gateway address,
and kube-router's firewall for NetworkPolicies.

Everything it creates on the host is its own and removed at stop(): the processes it
started (and the containers' shims), the bridge, the mounts under its directory, and the
iptables rules and ipsets of kube-proxy and kube-router. Nothing is pulled from outside:
every image is imported from podman, and containerd's registry configuration points every
registry at a closed loopback port.

Addresses and ports (fixed, one node per machine; the test ranges of the other sessions are
10000-32767 on loopback):
  pods 10.244.0.0/24 on bridge gostream0 (gateway 10.244.0.1, where CoreDNS answers on 53
  and the test's Kafka and simulated exchange listen), Services 10.96.0.0/16,
  API server 127.0.0.1:7443 (etcd 7379/7380), kubelet 127.0.0.1:7250,
  kube-proxy health/metrics 127.0.0.1:7256/7249, kube-router health 7244, the test's
  Prometheus 127.0.0.1:7290.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.k8s import cluster, prometheus

NODE_NAME = "localhost"  # kubelet refuses a loopback node IP; the API server reaches it by this name
CLUSTER_CIDR = "10.244.0.0/16"
POD_CIDR = "10.244.0.0/24"  # the node's share, allocated by the controller manager
GATEWAY = "10.244.0.1"
BRIDGE = "gostream0"
SERVICE_CIDR = "10.96.0.0/16"  # what cluster.py gives the API server
DNS_DOMAIN = "cluster.local"
PLANE_PORTS = cluster.PlanePorts(etcd_client=7379, etcd_peer=7380, apiserver=7443)
KUBELET_PORT = 7250
KUBE_PROXY_HEALTHZ_PORT = 7256
KUBE_PROXY_METRICS_PORT = 7249
KUBE_ROUTER_HEALTH_PORT = 7244
# Where containerd is told every registry lives: a loopback port nothing listens on (discard).
CLOSED_REGISTRY = "http://127.0.0.1:9"
PAUSE_IMAGE = "localhost/gostream-pause:1"
CNI_BIN = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
# The host tools the node needs and the Debian package of each (mk/k8s.mk installs them).
HOST_TOOLS = {"containerd": "containerd", "ctr": "containerd", "runc": "runc", "ipset": "ipset",
              "iptables": "iptables", "ip": "iproute2", "podman": "podman", "mount": "mount"}
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy", "coredns", "kube-router", "pause", "prometheus")
STATE_FILE = cluster.REPO / ".cache" / "k8s" / "node.json"

# The controllers a running node needs besides cluster.py's: node CIDRs, EndpointSlices for
# Services, volume binding (QuestDB's claim), the pod and node life cycle, disruption budgets,
# Jobs, and the kube-root-ca.crt ConfigMap every namespace gets.
NODE_CONTROLLERS = cluster.CONTROLLERS + (
    "node-ipam-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "persistentvolume-binder-controller",
    "persistentvolume-expander-controller",
    "persistentvolume-protection-controller",
    "persistentvolume-attach-detach-controller",
    "taint-eviction-controller",
    "pod-garbage-collector-controller",
    "node-lifecycle-controller",
    "disruption-controller",
    "job-controller",
    "ttl-after-finished-controller",
    "root-ca-certificate-publisher-controller",
)


class NodeError(RuntimeError):
    pass


def preflight() -> None:
    """Fail with an install hint for whatever the node lacks."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the node needs root (containerd, kubelet, iptables)")
    for tool, package in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` missing: `make k8s-node-deps` (apt-get install {package})")
    for plugin in CNI_PLUGINS:
        if not os.access(CNI_BIN / plugin, os.X_OK):
            problems.append(f"{CNI_BIN / plugin} missing: `make k8s-node-deps` (containernetworking-plugins)")
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        problems.append("bridged traffic cannot pass iptables (no /proc/sys/net/bridge): `modprobe br_netfilter`")
    for name in NODE_BINARIES:
        if not os.access(cluster.BIN_DIR / name, os.X_OK):
            problems.append(f"{cluster.BIN_DIR / name} missing: `make k8s-tools`")
    if problems:
        raise cluster.ToolMissing("; ".join(problems))


def plane(workdir: Path, logdir: Path) -> cluster.ControlPlane:
    """A control plane set up for a node: its own ports, the Node authorizer, kubelet access by
    host name, and the controllers above."""
    return cluster.ControlPlane(
        workdir=workdir, logdir=logdir, ports=PLANE_PORTS, controllers=NODE_CONTROLLERS,
        authorization_mode="Node,RBAC",
        apiserver_args=(
            "--kubelet-client-certificate", str(workdir / "pki" / "apiserver-kubelet-client.crt"),
            "--kubelet-client-key", str(workdir / "pki" / "apiserver-kubelet-client.key"),
            "--kubelet-certificate-authority", str(workdir / "pki" / "ca.crt"),
            "--kubelet-preferred-address-types", "Hostname",
        ),
        kcm_args=(
            "--allocate-node-cidrs", "--cluster-cidr", CLUSTER_CIDR, "--node-cidr-mask-size", "24",
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--root-ca-file", str(workdir / "pki" / "ca.crt"),
            "--cluster-signing-cert-file", str(workdir / "pki" / "ca.crt"),
            "--cluster-signing-key-file", str(workdir / "pki" / "ca.key"),
        ),
        extra_certs={
            "kubelet": (f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth", None),
            "kubelet-serving": (f"/CN={NODE_NAME}", "serverAuth", f"DNS:{NODE_NAME},IP:127.0.0.1"),
            "apiserver-kubelet-client": ("/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth", None),
            "scheduler": ("/CN=system:kube-scheduler", "clientAuth", None),
            "kube-proxy": ("/CN=system:kube-proxy", "clientAuth", None),
            # CoreDNS and kube-router read the whole cluster's Services, Pods and policies
            "node-addons": ("/O=system:masters/CN=gostream-node-addons", "clientAuth", None),
            # the test's Prometheus: only what RBAC grants it (tests/k8s/prometheus.py)
            prometheus.USER: (f"/CN={prometheus.USER}", "clientAuth", None),
        },
    )


def _run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-2000:]}")
    return result


def _sysctl(path: str, value: str) -> None:
    target = Path("/proc/sys") / path
    if target.read_text().strip() != value:
        target.write_text(value)


@dataclass
class Node:
    plane: cluster.ControlPlane
    workdir: Path
    logdir: Path
    components: list[cluster.Component] = field(default_factory=list)

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    # --- start ------------------------------------------------------------------------

    def start(self, images: list[str]) -> "Node":
        """Bring the node up, import `images` (podman names) into containerd, wait until the
        node is Ready and cluster DNS answers."""
        preflight()
        stop_stale()
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps({"workdir": str(self.workdir), "pids": []}))
        # Service traffic between pods of one bridge must pass iptables (kube-proxy's DNAT)
        _sysctl("net/bridge/bridge-nf-call-iptables", "1")
        _sysctl("net/ipv4/ip_forward", "1")
        # The bridge up front, so CoreDNS, Kafka and the exchange can bind its gateway address
        # before the first pod (the CNI bridge plugin adopts it).
        if _run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
            _run("ip", "link", "add", BRIDGE, "type", "bridge")
            _run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        self._start_containerd()
        self.import_images([*images, self._pause_image()])
        kubeconfig = self._kubeconfigs()
        self._write_cni()
        self._start("kubelet", [
            str(cluster.binary("kubelet")), "--config", str(self._kubelet_config()),
            "--kubeconfig", str(kubeconfig["kubelet"]), "--hostname-override", NODE_NAME,
            "--root-dir", str(self.workdir / "kubelet"), "--cert-dir", str(self.workdir / "kubelet-pki"),
            "--v=1",
        ])
        self._start("kube-scheduler", [
            str(cluster.binary("kube-scheduler")), "--kubeconfig", str(kubeconfig["scheduler"]),
            "--authentication-kubeconfig", str(kubeconfig["scheduler"]),
            "--authorization-kubeconfig", str(kubeconfig["scheduler"]),
            "--leader-elect=false", "--secure-port=0", "--v=1",
        ])
        cluster.wait_for("node localhost Ready with a pod CIDR", self._node_ready, 120, 1, alive=self._check_alive,
                         detail=self._node_detail)
        self._start("kube-proxy", [
            str(cluster.binary("kube-proxy")), "--kubeconfig", str(kubeconfig["kube-proxy"]),
            "--hostname-override", NODE_NAME, "--proxy-mode", "iptables", "--cluster-cidr", CLUSTER_CIDR,
            "--healthz-bind-address", f"127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}",
            "--metrics-bind-address", f"127.0.0.1:{KUBE_PROXY_METRICS_PORT}",
            # leave the host's conntrack settings alone
            "--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0",
            "--conntrack-tcp-timeout-close-wait", "0", "--iptables-localhost-nodeports=false",
            "--v=1",
        ])
        self._start("kube-router", [
            str(cluster.binary("kube-router")), "--kubeconfig", str(kubeconfig["node-addons"]),
            "--hostname-override", NODE_NAME, "--run-firewall=true", "--run-router=false",
            "--run-service-proxy=false", "--enable-ipv6=false", "--health-port", str(KUBE_ROUTER_HEALTH_PORT),
            "--metrics-port", "0", "--service-cluster-ip-range", SERVICE_CIDR, "--v=1",
        ])
        corefile = self.workdir / "Corefile"
        corefile.write_text(
            f".:53 {{\n  bind {GATEWAY}\n  errors\n  cache 5\n"
            f"  kubernetes {DNS_DOMAIN} in-addr.arpa ip6.arpa {{\n"
            f"    kubeconfig {kubeconfig['node-addons']} test\n    pods insecure\n  }}\n}}\n")
        self._start("coredns", [str(cluster.binary("coredns")), "-conf", str(corefile)])
        cluster.wait_for("kube-proxy healthy", lambda: _http_ok(f"http://127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}/healthz"),
                         60, 0.5, alive=self._check_alive)
        cluster.wait_for("kube-router healthy", lambda: _http_ok(f"http://127.0.0.1:{KUBE_ROUTER_HEALTH_PORT}/healthz"),
                         60, 0.5, alive=self._check_alive)
        cluster.wait_for(f"CoreDNS on {GATEWAY}:53 resolving kubernetes.default",
                         lambda: _resolve(GATEWAY, f"kubernetes.default.svc.{DNS_DOMAIN}") == "10.96.0.1",
                         60, 0.5, alive=self._check_alive)
        return self

    def run_on_host(self, name: str, argv: list[str]) -> cluster.Component:
        """Start another host process of the node (stopped with it, and by the next session's
        stop_stale() if this one is killed)."""
        self._start(name, argv)
        return self.components[-1]

    def _start(self, name: str, argv: list[str]) -> None:
        component = cluster.Component(name, argv, self.logdir / f"{name}.log").start()
        self.components.append(component)
        state = json.loads(STATE_FILE.read_text())
        state["pids"].append(component.process.pid)
        STATE_FILE.write_text(json.dumps(state))

    def _check_alive(self) -> None:
        for component in self.components:
            component.check_alive()
        self.plane._check_alive()

    def _start_containerd(self) -> None:
        root = self.workdir / "containerd"
        hosts = root / "certs.d" / "_default"
        hosts.mkdir(parents=True, exist_ok=True)
        # Every registry (the `_default` host) is this closed loopback port: a pull of an image
        # that was not imported fails here, with no DNS lookup and no connection outside.
        hosts.joinpath("hosts.toml").write_text(
            f'server = "{CLOSED_REGISTRY}"\n\n[host."{CLOSED_REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n')
        config = root / "config.toml"
        config.write_text(f"""version = 2
root = "{root / 'root'}"
state = "{root / 'state'}"
disabled_plugins = ["io.containerd.grpc.v1.cri.btrfs", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{root / 'containerd.ttrpc.sock'}"

[debug]
  level = "warn"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: runc cannot lower a sandbox's oom_score_adj below its own
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which('runc')}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.workdir / 'cni' / 'net.d'}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{root / 'certs.d'}"
""")
        self._start("containerd", [shutil.which("containerd"), "--config", str(config)])
        cluster.wait_for("containerd", lambda: self._ctr("version", check=False).returncode == 0, 60, 0.5,
                         alive=self._check_alive)

    def _ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run("ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args,
                    check=check, timeout=timeout)

    def _pause_image(self) -> str:
        """The sandbox image: k8s-test/pause's binary alone, made into an image by podman."""
        build = self.workdir / "pause-image"
        build.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cluster.binary("pause"), build / "pause")
        (build / "Containerfile").write_text('FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n')
        _run("podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "build", "-q", "-t", PAUSE_IMAGE,
             str(build))
        return PAUSE_IMAGE

    def import_images(self, images: list[str]) -> None:
        """Copy podman's images into containerd (one archive, unpacked on import)."""
        archive = self.workdir / "images.tar"
        _run("podman", "save", "--format", "docker-archive", "-m", "-o", str(archive), *images, timeout=600)
        self._ctr("images", "import", str(archive), timeout=600)
        archive.unlink()
        listed = self._ctr("images", "list", "-q").stdout.split()
        missing = [i for i in images if i not in listed and f"docker.io/{i}" not in listed]
        if missing:
            raise NodeError(f"images not in containerd after the import: {missing} (have {listed})")

    def _kubeconfigs(self) -> dict[str, Path]:
        certs = self.plane.certs
        return {user: cluster.write_kubeconfig(self.workdir / f"{user}.kubeconfig", certs, user,
                                               PLANE_PORTS.apiserver)
                for user in ("kubelet", "scheduler", "kube-proxy", "node-addons")}

    def _write_cni(self) -> None:
        net = self.workdir / "cni" / "net.d"
        net.mkdir(parents=True, exist_ok=True)
        (net / "10-gostream.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0",
            "name": "gostream",
            "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": True,
                # nothing leaves the node, so no masquerading (and no NAT rules on the host)
                "ipMasq": False,
                # a pod reaching itself through its Service comes back over the bridge
                "hairpinMode": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                         "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.workdir / "cni" / "ipam")},
            }],
        }, indent=2))

    def _kubelet_config(self) -> Path:
        pki = self.plane.certs
        resolv = self.workdir / "resolv.conf"
        resolv.write_text("")  # no host search domains or resolvers inside the pods
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzPort": 0,
            # this VM is cgroup v1 and has swap accounting off
            "failCgroupV1": False,
            "failSwapOn": False,
            "cgroupDriver": "cgroupfs",
            # pods' cgroups directly under the runtime's, none of the host's cgroups touched
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(pki.path("ca.crt"))}},
            "authorization": {"mode": "AlwaysAllow"},  # only holders of the test CA's certificates get here
            "tlsCertFile": str(pki.path("kubelet-serving.crt")),
            "tlsPrivateKeyFile": str(pki.path("kubelet-serving.key")),
            "clusterDNS": [GATEWAY],
            "clusterDomain": DNS_DOMAIN,
            "resolvConf": str(resolv),
            # a shared machine: evict nothing because another session fills the disk or memory
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "containerLogMaxSize": "5Mi",
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
            "volumeStatsAggPeriod": "0s",
        }
        path = self.workdir / "kubelet.yaml"
        path.write_text(json.dumps(config, indent=2))
        return path

    def _node(self) -> dict:
        return self.plane.kube.get(f"/api/v1/nodes/{NODE_NAME}")

    def _node_ready(self) -> bool:
        node = self._node()
        conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        return conditions.get("Ready") == "True" and node["spec"].get("podCIDR") == POD_CIDR

    def _node_detail(self) -> str:
        try:
            node = self._node()
        except cluster.ApiError as exc:
            return str(exc)
        return json.dumps({"podCIDR": node["spec"].get("podCIDR"),
                           "conditions": [(c["type"], c["status"], c.get("message", ""))
                                          for c in node.get("status", {}).get("conditions", [])]})

    # --- stop ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process and container, then remove what the node set up on the host."""
        # kubelet first (it would restart containers), then the containers themselves: neither
        # kubelet nor containerd stops them when it exits.
        for component in reversed(self.components):
            if component.name != "containerd":
                component.stop()
        if self.containerd_socket.exists():
            for task in self._ctr("tasks", "list", "-q", check=False).stdout.split():
                self._ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task, check=False)
        for component in self.components:
            component.stop()
        self.components.clear()
        cleanup(self.workdir)


def stop_stale() -> None:
    """Clean up after an earlier session that was killed before its teardown."""
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return
    for pid in state.get("pids", []):
        try:
            exe = Path(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            continue
        if exe.parent == cluster.BIN_DIR.resolve() or exe.name == "containerd":
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    cleanup(Path(state["workdir"]))


def cleanup(workdir: Path) -> None:
    """Remove what a node set up on the host: containers and their shims and cgroups, mounts
    under its directory, the bridge, and the iptables rules and ipsets of kubelet,
    kube-proxy and kube-router."""
    _kill_containers(workdir)
    _unmount_under(workdir)
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        _run("ip", "link", "delete", BRIDGE, check=False)
    # kube-proxy removes its own chains (iptables, and nftables/IPVS if it ever used them)
    kube_proxy = cluster.BIN_DIR / "kube-proxy"
    if kube_proxy.exists():
        _run(str(kube_proxy), "--cleanup", "--v=0", check=False)
    _remove_node_rules()
    STATE_FILE.unlink(missing_ok=True)


def _kill_containers(workdir: Path) -> None:
    """Kill what is left in the containers of this node's containerd (each one's cgroup
    holds its processes) and their shims, which outlive containerd; remove the cgroups."""
    tasks = workdir / "containerd" / "state" / "io.containerd.runtime.v2.task" / "k8s.io"
    ids = [d.name for d in tasks.iterdir()] if tasks.is_dir() else []
    socket_path = str(workdir / "containerd" / "containerd.sock")
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and socket_path.encode() in argv:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
    groups = [g for task in ids for g in Path("/sys/fs/cgroup").glob(f"*/k8s.io/{task}")]
    for _ in range(50):
        pids = {int(p) for g in groups if (g / "cgroup.procs").exists()
                for p in (g / "cgroup.procs").read_text().split()}
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    for group in groups:
        try:
            group.rmdir()
        except OSError:
            pass
    for parent in Path("/sys/fs/cgroup").glob("*/k8s.io"):
        try:
            parent.rmdir()  # only once no container is left in it
        except OSError:
            pass


def _unmount_under(workdir: Path) -> None:
    prefix = str(workdir.resolve()) + "/"
    for _ in range(3):
        mounts = [line.split()[1].encode().decode("unicode_escape")
                  for line in Path("/proc/self/mounts").read_text().splitlines()]
        ours = sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True)
        if not ours:
            return
        for mount in ours:
            _run("umount", "-l", mount, check=False)


# Chains the node's parts add to the host's tables and leave behind: kube-router's firewall
# (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*) and kubelet's (KUBE-FIREWALL, the canary and
# the hint); kube-proxy removes its own (`--cleanup`). No one else's chains are named so.
_NODE_CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
_NODE_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")


def _remove_node_rules() -> None:
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = _run(f"{tool}-save", "-t", table, check=False).stdout.splitlines()
            chains = [line[1:].split()[0] for line in rules if line.startswith(":")]
            ours = [c for c in chains if c.startswith(_NODE_CHAIN_PREFIXES) or c in _NODE_CHAINS]
            if not ours:
                continue
            for line in rules:  # jumps into them from the other chains first
                words = shlex.split(line)
                if line.startswith("-A ") and words[1] not in ours and "-j" in words \
                        and words[words.index("-j") + 1] in ours:
                    _run(tool, "-t", table, "-D", *words[1:], check=False)
            for chain in ours:
                _run(tool, "-t", table, "-F", chain, check=False)
            for chain in ours:
                _run(tool, "-t", table, "-X", chain, check=False)
    for name in _run("ipset", "list", "-n", check=False).stdout.split():
        if name.startswith(("KUBE-SRC-", "KUBE-DST-", "kube-router-")):
            _run("ipset", "destroy", name, check=False)


def _http_ok(url: str) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _resolve(server: str, name: str) -> str | None:
    """One A query to `server` (a minimal DNS client: the test needs no resolver library)."""
    import random
    import socket
    import struct
    query_id = random.randrange(65536)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        try:
            sock.sendto(packet, (server, 53))
            answer = sock.recv(512)
        except OSError:
            return None
    if len(answer) < 12 or struct.unpack(">H", answer[:2])[0] != query_id:
        return None
    ancount = struct.unpack(">H", answer[6:8])[0]
    if not ancount or answer[3] & 0x0F:
        return None
    # the answer's last 4 bytes are the first A record's address when there is one record
    return socket.inet_ntoa(answer[-4:]) if ancount == 1 else None

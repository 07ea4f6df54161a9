"""What each part of the stack is: its command, environment, data and readiness check."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

from stack import tls

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
JARS = CACHE / "jars"
POM = ROOT / "stack" / "pom.xml"
PYTHON = sys.executable

# Shared with the Helm chart (which can only read files inside itself): the alerting rules
# and the Kafka JMX exporter rules.
MONITORING_FILES = ROOT / "charts" / "gostream" / "files"
PROMETHEUS_RULES = MONITORING_FILES / "prometheus-rules.yaml"
KAFKA_JMX_CONFIG = MONITORING_FILES / "kafka-jmx-exporter.yaml"

KAFKA_HEAP = os.environ.get("GOSTREAM_KAFKA_HEAP", "-Xms256m -Xmx512m")
QUESTDB_HEAP = os.environ.get("GOSTREAM_QUESTDB_HEAP", "-Xms128m -Xmx512m")


class SetupError(RuntimeError):
    """Something the machine lacks; the message says how to get it."""


@dataclass(frozen=True)
class Ports:
    kafka: int = 9092
    kafka_controller: int = 9093
    questdb_http: int = 9000
    questdb_pg: int = 8812
    questdb_health: int = 9003
    questdb_ilp_tcp: int = 9009
    producer: int = 9101
    consumer: int = 9102
    api: int = 3000
    frontend: int = 8080
    exchange: int = 8443
    prometheus: int = 9090
    kafka_metrics: int = 9404  # the JMX exporter agent in the broker

    def shifted(self, offset: int) -> Ports:
        """Every port moved by ``offset``: a second stack beside the first."""
        return Ports(**{name: port + offset for name, port in dataclasses.asdict(self).items()})


@dataclass
class Spec:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    url: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    prepare: Callable[[], None] | None = None
    stop_timeout_s: float = 20.0
    # Enough for the next component to start (default: ready). The producer only needs to
    # be alive: without an exchange it is never ready, and the rest must still come up.
    started: Callable[[], bool] | None = None


# -- jars -------------------------------------------------------------------
def _require(tool: str, hint: str) -> None:
    if shutil.which(tool) is None:
        raise SetupError(f"`{tool}` not found: {hint}")


def ensure_jars() -> None:
    """Fetch Kafka, QuestDB and the JMX exporter agent from Maven Central once; later
    calls download nothing."""
    _require("java", "install Java 17+, e.g. `apt-get install -y openjdk-17-jre-headless`")
    for group in ("kafka", "questdb", "jmx"):
        target = JARS / group
        if target.is_dir() and any(target.glob("*.jar")):
            continue
        _require("mvn", "install Maven, e.g. `apt-get install -y maven`")
        print(f"fetching {group} from Maven Central into {target} ...", flush=True)
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(POM), "-P", group, "dependency:copy-dependencies",
             f"-DoutputDirectory={target}.partial", "-DincludeScope=runtime"],
            check=True,
        )
        os.replace(f"{target}.partial", target)


# -- probes -----------------------------------------------------------------
def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def kafka_ready(port: int, host: str = "127.0.0.1", **client) -> bool:
    """The broker answers (``client``: TLS/SASL keyword arguments, KafkaSecurity.client)."""
    if not port_open(port, host):
        return False
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=f"{host}:{port}", bootstrap_timeout_ms=3000, **client)
    except Exception:
        return False
    try:
        return bool(admin.describe_cluster()["brokers"])
    except Exception:
        return False
    finally:
        admin.close()


# -- the JVM servers --------------------------------------------------------
def jmx_agent(port: int) -> list[str]:
    """The JVM flag running the Prometheus JMX exporter in the broker on ``port`` (/metrics),
    with the chart's rules; none when `make jars` has not fetched the agent."""
    jar = next(iter(sorted((JARS / "jmx").glob("jmx_prometheus_javaagent-*.jar"))), None)
    if jar is None:
        return []
    return [f"-javaagent:{jar}=127.0.0.1:{port}:{KAFKA_JMX_CONFIG}"]


@dataclass(frozen=True)
class KafkaSecurity:
    """The broker's client listener as SASL_SSL (what Strimzi's ``tls: true`` +
    ``scram-sha-512`` listener is): TLS with ``cert``, SCRAM-SHA-512 ``users`` (name ->
    password) created when the storage is formatted, and the StandardAuthorizer with ACLs,
    ``admin`` (one of the users) its super user."""

    cert: tls.ServerCert
    users: dict[str, str]
    admin: str = "admin"

    def client(self, user: str | None = None, password: str | None = None, cafile: Path | None = None) -> dict:
        """kafka-python keyword arguments (no servers) for ``user`` (default: the admin),
        built by the services' own settings."""
        from gostream.common.settings import kafka_client_config, KafkaSettings

        user = user or self.admin
        settings = KafkaSettings(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=str(cafile or self.cert.ca),
                                 kafka_sasl_username=user,
                                 kafka_sasl_password=self.users[user] if password is None else password)
        settings.check()
        config = kafka_client_config(settings)
        del config["bootstrap_servers"]
        return config

    def properties(self) -> list[str]:
        admin = self.admin
        return [
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram."
            f'ScramLoginModule required username="{admin}" password="{self.users[admin]}";',
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.cert.keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.cert.ca}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # ANONYMOUS: the broker's own requests to its controller, over the loopback-only
            # PLAINTEXT controller listener; every client comes through SASL_SSL.
            f"super.users=User:{admin};User:ANONYMOUS",
        ]

    def format_args(self) -> list[str]:
        return [arg for name, password in self.users.items()
                for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]


def kafka(data: Path, ports: Ports, host: str = "127.0.0.1", security: KafkaSecurity | None = None) -> Spec:
    """The broker; clients reach it on ``host`` (a test node's pods: its bridge address),
    with ``security`` over SASL_SSL only."""
    home = data / "kafka"
    props = home / "server.properties"
    classpath = f"{JARS / 'kafka'}/*"
    listener = "SASL_SSL" if security else "PLAINTEXT"

    def prepare() -> None:
        home.mkdir(parents=True, exist_ok=True)
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{ports.kafka_controller}",
                    f"listeners={listener}://{host}:{ports.kafka},CONTROLLER://127.0.0.1:{ports.kafka_controller}",
                    f"advertised.listeners={listener}://{host}:{ports.kafka}",
                    "controller.listener.names=CONTROLLER",
                    f"listener.security.protocol.map={listener}:{listener},CONTROLLER:PLAINTEXT",
                    f"inter.broker.listener.name={listener}",
                    *(security.properties() if security else []),
                    f"log.dirs={home / 'data'}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=3",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        if not (home / "data" / "meta.properties").exists():
            run = lambda *args: subprocess.run(  # noqa: E731
                ["java", "-cp", classpath, "kafka.tools.StorageTool", *args],
                check=True, capture_output=True, text=True,
            )
            cluster_id = run("random-uuid").stdout.strip().splitlines()[-1]
            run("format", "-t", cluster_id, "-c", str(props), "--standalone",
                *(security.format_args() if security else []))

    return Spec(
        name="kafka",
        argv=["java", *KAFKA_HEAP.split(), "-XX:+UseG1GC",
              f"-Dlog4j2.configurationFile={ROOT / 'stack' / 'kafka-log4j2.properties'}",
              *jmx_agent(ports.kafka_metrics),
              "-cp", classpath, "kafka.Kafka", str(props)],
        ready=lambda: kafka_ready(ports.kafka, host, **(security.client() if security else {})),
        url=f"{host}:{ports.kafka}",
        prepare=prepare,
        stop_timeout_s=30,
    )


# QuestDB tuned for a small machine (the chart's values set the same). Measured at 35-100
# transactions/s of 30 rows on two cores (BENCHMARKS.md): its worker threads spin and yield
# between jobs before they sleep, so with a transaction every few tens of milliseconds they
# never sleep (1.9 cores -> 0.25 with these thresholds, a row visible as fast); and INFO
# logs several lines per transaction and query (0.7 core -> 0.2 at 100 transactions/s).
# Materialized views need a refresh worker of their own: a count of 0 turns refresh off.
QUESTDB_SMALL_MACHINE = {
    "QDB_SHARED_WORKER_YIELD_THRESHOLD": "10",
    "QDB_SHARED_WORKER_NAP_THRESHOLD": "20",
    "QDB_SHARED_WORKER_SLEEP_THRESHOLD": "50",
    "QDB_WAL_APPLY_WORKER_COUNT": "0",
    "QDB_MAT_VIEW_REFRESH_WORKER_COUNT": "1",
    "QDB_MAT_VIEW_REFRESH_WORKER_YIELD_THRESHOLD": "10",
    "QDB_MAT_VIEW_REFRESH_WORKER_NAP_THRESHOLD": "20",
    "QDB_MAT_VIEW_REFRESH_WORKER_SLEEP_THRESHOLD": "50",
    "QDB_LOG_W_STDOUT_LEVEL": "ERROR,CRITICAL,ADVISORY",
}


def questdb(data: Path, ports: Ports) -> Spec:
    home = data / "questdb"
    jar = next(iter(sorted((JARS / "questdb").glob("questdb-*.jar"))), JARS / "questdb" / "questdb.jar")
    env = {
        "QDB_METRICS_ENABLED": "true",
        "QDB_TELEMETRY_ENABLED": "false",
        "QDB_HTTP_MIN_WORKER_COUNT": "1",
        "QDB_SHARED_WORKER_COUNT": "2",
        **QUESTDB_SMALL_MACHINE,
        "QDB_HTTP_BIND_TO": f"127.0.0.1:{ports.questdb_http}",
        "QDB_HTTP_MIN_NET_BIND_TO": f"127.0.0.1:{ports.questdb_health}",
        "QDB_PG_NET_BIND_TO": f"127.0.0.1:{ports.questdb_pg}",
        "QDB_LINE_TCP_NET_BIND_TO": f"127.0.0.1:{ports.questdb_ilp_tcp}",
        "QDB_LINE_UDP_ENABLED": "false",
    }
    return Spec(
        name="questdb",
        argv=["java", *QUESTDB_HEAP.split(), "-p", str(jar), "-m", "io.questdb/io.questdb.ServerMain", "-d", str(home)],
        env=env,
        ready=lambda: http_ok(f"http://127.0.0.1:{ports.questdb_health}/status")
        and http_ok(f"http://127.0.0.1:{ports.questdb_http}/exec?query=select%201"),
        url=f"http://127.0.0.1:{ports.questdb_http} (console), pg 127.0.0.1:{ports.questdb_pg}, metrics :{ports.questdb_health}/metrics",
        prepare=lambda: home.mkdir(parents=True, exist_ok=True),
        stop_timeout_s=30,
    )


# -- topics -----------------------------------------------------------------
def ensure_topics(port: int, topics: dict[str, int], fenced_wait_s: float = 60.0, **client) -> None:
    """Create missing topics (name -> partitions); existing ones are left alone. (``client``:
    TLS/SASL keyword arguments, KafkaSecurity.client.)

    A single broker that missed its heartbeats (the JVM stalled on a loaded machine) is
    fenced by its controller until the next one lands, and refuses new topics meanwhile
    ("All brokers are currently fenced"): that is retried for up to ``fenced_wait_s``."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import InvalidReplicationFactorError

    deadline = time.monotonic() + fenced_wait_s
    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", **client)
    try:
        while missing := set(topics) - set(admin.list_topics()):
            try:
                admin.create_topics([NewTopic(name, topics[name], 1) for name in sorted(missing)])
                return
            except InvalidReplicationFactorError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()


# -- the Python services ----------------------------------------------------
def service_env(ports: Ports, **overrides: str) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports.kafka}",
        "KAFKA_TOPIC": os.environ.get("KAFKA_TOPIC") or "trades",
        "KAFKA_DLQ_TOPIC": os.environ.get("KAFKA_DLQ_TOPIC") or "trades.dlq",
        "QUESTDB_HOST": "127.0.0.1",
        "QUESTDB_HTTP_PORT": str(ports.questdb_http),
        "QUESTDB_PG_PORT": str(ports.questdb_pg),
        "API_URL": f"http://127.0.0.1:{ports.api}",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def producer(ports: Ports, env: dict[str, str]) -> Spec:
    return Spec(
        name="producer",
        argv=[PYTHON, "-m", "gostream.producer"],
        env={**env, "HEALTH_PORT": str(ports.producer)},
        ready=lambda: http_ok(f"http://127.0.0.1:{ports.producer}/readyz"),
        started=lambda: http_ok(f"http://127.0.0.1:{ports.producer}/healthz"),
        url=f"http://127.0.0.1:{ports.producer}/metrics",
    )


def consumer(ports: Ports, env: dict[str, str], replica: int = 0) -> Spec:
    """One consumer of the group; replicas past the first listen 10 ports further each."""
    port = consumer_port(ports, replica)
    return Spec(
        name="consumer" if replica == 0 else f"consumer-{replica + 1}",
        argv=[PYTHON, "-m", "gostream.consumer"],
        env={**env, "HEALTH_PORT": str(port)},
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/readyz"),
        url=f"http://127.0.0.1:{port}/metrics",
    )


def consumer_port(ports: Ports, replica: int) -> int:
    return ports.consumer + 10 * replica


def exchange(ports: Ports, rate: float = 20.0, control: bool = False) -> Spec:
    """The simulated OKX exchange (for a machine without internet, and for demos); with
    ``control``, driven over HTTP /sim/* (benchmarks) and quiet unless asked."""
    argv = [PYTHON, "-m", "tests.okxsim", "--port", str(ports.exchange), "--rate", str(rate)]
    return Spec(
        name="exchange",
        argv=argv + (["--symbols", "", "--control"] if control else []),
        ready=lambda: port_open(ports.exchange),
        url=f"ws://127.0.0.1:{ports.exchange}/ws/v5/business (simulated OKX)",
    )


def readyz_problems(port: int) -> list[str]:
    """What a service's /readyz says is wrong, for progress messages."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
            return []
    except urllib.error.HTTPError as exc:
        try:
            return json.loads(exc.read()).get("problems", [])
        except ValueError:
            return [f"HTTP {exc.code}"]
    except OSError as exc:
        return [f"not answering: {exc}"]


def api(ports: Ports, env: dict[str, str]) -> Spec:
    """The candle API (gunicorn; see gostream/api/gunicorn_conf.py)."""
    return Spec(
        name="api",
        argv=[PYTHON, "-m", "gunicorn", "-c", "python:gostream.api.gunicorn_conf", "gostream.api.wsgi:app"],
        env={**env, "PORT": str(ports.api), "HOST": "127.0.0.1"},
        ready=lambda: http_ok(f"http://127.0.0.1:{ports.api}/readyz"),
        url=f"http://127.0.0.1:{ports.api}/candles (OpenAPI: /openapi.json)",
        stop_timeout_s=10,
    )


def frontend(ports: Ports, env: dict[str, str]) -> Spec:
    """The trading terminal and /api proxy (gunicorn; see gostream/frontend/gunicorn_conf.py)."""
    return Spec(
        name="frontend",
        argv=[PYTHON, "-m", "gunicorn", "-c", "python:gostream.frontend.gunicorn_conf", "gostream.frontend.wsgi:app"],
        env={**env, "PORT": str(ports.frontend), "HOST": "127.0.0.1", "API_URL": f"http://127.0.0.1:{ports.api}"},
        ready=lambda: http_ok(f"http://127.0.0.1:{ports.frontend}/readyz"),
        url=f"http://127.0.0.1:{ports.frontend}/ (Goosey LLC - QuestDB View)",
        stop_timeout_s=10,
    )


# -- Prometheus ---------------------------------------------------------------
def prometheus_config(ports: Ports, scrape_interval: str = "5s", consumers: int = 1) -> dict:
    """Scrape every part of the stack, each target labelled ``component`` as the alerting
    rules expect (the chart's monitors set the same label in Kubernetes)."""
    targets = {
        "producer": ports.producer,
        "api": ports.api,
        "frontend": ports.frontend,
        "questdb": ports.questdb_health,
        "kafka": ports.kafka_metrics,
    }
    jobs = [
        {"job_name": name, "metrics_path": "/metrics",
         "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"component": name}}]}
        for name, port in targets.items()
    ]
    jobs.insert(1, {"job_name": "consumer", "metrics_path": "/metrics", "static_configs": [
        {"targets": [f"127.0.0.1:{consumer_port(ports, r)}" for r in range(consumers)],
         "labels": {"component": "consumer"}}]})
    jobs.append({"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{ports.prometheus}"]}]})
    return {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                   "evaluation_interval": scrape_interval},
        "rule_files": [str(PROMETHEUS_RULES)],
        "scrape_configs": jobs,
    }


def prometheus(data: Path, ports: Ports, scrape_interval: str = "5s", consumers: int = 1) -> Spec:
    """Debian's Prometheus (`make monitoring-deps`), its config generated into ``data``."""
    home = data / "prometheus"
    config = home / "prometheus.yml"

    def prepare() -> None:
        _require("prometheus", "run `make monitoring-deps` (apt-get install prometheus)")
        (home / "tsdb").mkdir(parents=True, exist_ok=True)
        # JSON is YAML: no YAML library needed here.
        config.write_text(json.dumps(prometheus_config(ports, scrape_interval, consumers), indent=2) + "\n")

    return Spec(
        name="prometheus",
        argv=["prometheus", f"--config.file={config}", f"--storage.tsdb.path={home / 'tsdb'}",
              f"--web.listen-address=127.0.0.1:{ports.prometheus}", "--storage.tsdb.retention.time=7d",
              "--log.format=json"],
        ready=lambda: http_ok(f"http://127.0.0.1:{ports.prometheus}/-/ready"),
        url=f"http://127.0.0.1:{ports.prometheus}/ (Prometheus: /targets, /alerts)",
        prepare=prepare,
        stop_timeout_s=15,
    )

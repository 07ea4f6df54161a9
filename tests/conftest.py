"""Real parts for the tests: a Kafka broker and a QuestDB server per test session, on
ports of their own (so a running `make up` is left alone), the simulated OKX exchange
per test, and the services as real subprocesses."""

from __future__ import annotations

import itertools
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from stack import components as c
from stack.process import Process
from tests.okxsim import OkxExchange

# Every default port + 10000 (Kafka 19092, QuestDB 19000/18812/19003, api 13000 ...);
# GOSTREAM_TEST_PORT_OFFSET picks another set, to run two test sessions side by side.
# Every port a test listens on stays below the kernel's ephemeral range (32768+): there an
# outgoing connection's source port can hold it, and a server fails to bind (seen with
# QuestDB). The other sets: tests/stack +12000, tests/chaos +3000, tests/images the session's
# producer/consumer/api/frontend ports + 200, tests/common's QuestDB with credentials the
# session's + 700 and its TLS + SCRAM Kafka + 800 (broker, controller, JMX agent),
# tests/k8s 25379/25380/26443, spare_port() from 24092, make bench +8000.
TEST_PORTS = c.Ports().shifted(int(os.environ.get("GOSTREAM_TEST_PORT_OFFSET") or 10000))
ARTIFACTS = c.ROOT / "test-artifacts"
_names = itertools.count(1)


# Extra listening ports come from a range of our own below the kernel's ephemeral range
# (32768+), never from bind(0): a port the kernel hands out can be taken again at once,
# as the source port of any outgoing connection or by another bind(0).
_spare_ports = itertools.count(TEST_PORTS.kafka + 5000)


def spare_port() -> int:
    """A port nothing listens on, for a process a test starts beside the fixtures."""
    for port in _spare_ports:
        if not c.port_open(port):
            return port
    raise RuntimeError("unreachable")


def unique(prefix: str) -> str:
    """A name no other test in this session uses (topics, groups, symbols)."""
    return f"{prefix}{os.getpid() % 1000}{next(_names)}"


@pytest.fixture(scope="session")
def ports() -> c.Ports:
    return TEST_PORTS


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stack")


def _start(spec: c.Spec, port: int, stack_dir: Path) -> Process:
    if c.port_open(port):
        pytest.fail(f"port {port} is taken: stop whatever listens there (an earlier test run?) and retry")
    return Process(spec, stack_dir / "logs").start()


@pytest.fixture(scope="session")
def kafka(stack_dir) -> Process:
    c.ensure_jars()
    process = _start(c.kafka(stack_dir, TEST_PORTS), TEST_PORTS.kafka, stack_dir).wait_ready(120)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def questdb(stack_dir) -> Process:
    c.ensure_jars()
    process = _start(c.questdb(stack_dir, TEST_PORTS), TEST_PORTS.questdb_http, stack_dir).wait_ready(120)
    yield process
    process.stop()


@pytest.fixture
def exchange() -> OkxExchange:
    with OkxExchange(port=0) as ex:
        yield ex


@pytest.fixture
def topic(kafka) -> str:
    """A fresh topic (3 partitions) and its DLQ for one test."""
    name = unique("trades-")
    c.ensure_topics(TEST_PORTS.kafka, {name: 3, f"{name}.dlq": 1})
    return name


@pytest.fixture
def services(request, kafka, questdb, stack_dir):
    """Start producer/consumer as subprocesses: ``services.start("consumer", topic=..., **env)``."""
    started: list[Process] = []
    request.node.service_processes = started  # their logs go into a failure's report

    class Services:
        def spec(self, name: str, topic: str, **env: str) -> c.Spec:
            defaults = {"KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": f"{topic}.dlq", "KAFKA_GROUP_ID": f"{topic}-group",
                        "LOG_LEVEL": "INFO"}
            base = c.service_env(TEST_PORTS, **{**defaults, **env})
            return getattr(c, name)(TEST_PORTS, base)

        def start(self, name: str, topic: str, wait: bool = True, **env: str) -> Process:
            spec = self.spec(name, topic, **env)
            log_dir = stack_dir / "logs" / request.node.name
            process = Process(spec, log_dir).start()
            started.append(process)
            if wait:
                process.wait_ready(60)
            return process

    yield Services()
    for process in reversed(started):
        process.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the last lines of each service it started: the
    service's own account of what went wrong (CI keeps nothing else)."""
    report = yield
    if report.when == "call" and report.failed:
        for process in getattr(item, "service_processes", []):
            report.sections.append((f"{process.spec.name} log, last lines", process.tail(25)))
    return report


def pytest_collection_modifyitems(items):
    """tests/k8s last: `make test` builds their binaries in the background while the rest
    runs (mk/k8s.mk); a fresh machine's Go build then overlaps the suite."""
    k8s_tests = Path(__file__).parent / "k8s"
    items.sort(key=lambda item: item.path.is_relative_to(k8s_tests))  # stable: order kept otherwise


# -- QuestDB helpers for assertions -------------------------------------------
def sql(query: str, port: int = TEST_PORTS.questdb_http) -> list[dict]:
    """Rows of a query over QuestDB's HTTP /exec, as dicts."""
    url = f"http://127.0.0.1:{port}/exec?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    names = [col["name"] for col in body["columns"]]
    return [dict(zip(names, row)) for row in body["dataset"]]


def get_json(url: str, timeout_s: float = 5.0) -> tuple[int, object]:
    """GET ``url``: (HTTP status, JSON body), for error answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def wait_for(check, timeout_s: float = 30.0, interval_s: float = 0.25, message: str = "condition"):
    """Poll ``check`` until it returns something truthy; fail with ``message`` if never."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {message} (last: {last!r})")


# -- Kafka helpers for assertions ---------------------------------------------
def read_topic(topic: str, port: int = TEST_PORTS.kafka) -> list:
    """Every record currently in ``topic`` (all partitions), without a consumer group."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}", enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def produce(topic: str, values: list[tuple[bytes | None, bytes | None]], port: int = TEST_PORTS.kafka) -> None:
    """Write (key, value) records to ``topic`` and wait for the broker's acks."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}")
    try:
        for key, value in values:
            producer.send(topic, key=key, value=value)
        producer.flush(30)
    finally:
        producer.close()


def metric(port: int, name: str, labels: str = "") -> float:
    """One sample's value from a service's /metrics (0 when the series is absent or the
    service does not answer yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    wanted = f"{name}{{{labels}}}" if labels else name
    total = 0.0
    for line in text.splitlines():
        if line.startswith(wanted + " ") or (not labels and line.startswith(name + "{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- the api (tests/api, tests/frontend) ---------------------------------------
@pytest.fixture(scope="session")
def api(questdb, stack_dir) -> Process:
    """The candle API under gunicorn on TEST_PORTS.api, reading the session's QuestDB.

    The schema (table and 1m view) is created first, as the consumer does at start-up."""
    from gostream.common.schema import ensure_schema

    ensure_schema(f"http://127.0.0.1:{TEST_PORTS.questdb_http}")
    env = c.service_env(TEST_PORTS, LOG_LEVEL="INFO", STREAM_POLL_MS="100", STREAM_KEEPALIVE_S="1")
    process = _start(c.api(TEST_PORTS, env), TEST_PORTS.api, stack_dir).wait_ready(60)
    yield process
    process.stop()

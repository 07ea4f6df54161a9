"""Real parts for the tests: a Kafka broker and a QuestDB server per test session, on
ports of their own (so a running `make up` is left alone), the simulated OKX exchange
per test, and the services as real subprocesses."""

from __future__ import annotations

import itertools
import json
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from stack import components as c
from stack.process import Process
from tests.okxsim import OkxExchange

TEST_PORTS = c.Ports(
    kafka=19092,
    kafka_controller=19093,
    questdb_http=19000,
    questdb_pg=18812,
    questdb_health=19003,
    questdb_ilp_tcp=19009,
    producer=19101,
    consumer=19102,
    api=13000,
    frontend=18080,
    exchange=18443,
)
ARTIFACTS = c.ROOT / "test-artifacts"
_names = itertools.count(1)


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

    class Services:
        def spec(self, name: str, topic: str, **env: str) -> c.Spec:
            base = c.service_env(
                TEST_PORTS,
                KAFKA_TOPIC=topic,
                KAFKA_DLQ_TOPIC=f"{topic}.dlq",
                KAFKA_GROUP_ID=f"{topic}-group",
                LOG_LEVEL="INFO",
                **env,
            )
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


# -- QuestDB helpers for assertions -------------------------------------------
def sql(query: str, port: int = TEST_PORTS.questdb_http) -> list[dict]:
    """Rows of a query over QuestDB's HTTP /exec, as dicts."""
    url = f"http://127.0.0.1:{port}/exec?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    names = [col["name"] for col in body["columns"]]
    return [dict(zip(names, row)) for row in body["dataset"]]


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

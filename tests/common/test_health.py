import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gostream.common.health import BatchHistogram, HealthServer

PROBE_COUNTER = Counter("gostream_test_probe_total", "A counter only this test increments")


@pytest.fixture
def server():
    problems: list[str] = []
    health = HealthServer(0, lambda: list(problems), host="127.0.0.1").start()
    yield health, problems
    health.stop()


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_alive_and_ready(server):
    health, _ = server
    assert get(health.port, "/healthz") == (200, b'{"alive": true}')
    assert get(health.port, "/readyz") == (200, b'{"ready": true}')


def test_not_ready_lists_the_problems(server):
    health, problems = server
    problems.append("kafka: not connected")
    status, body = get(health.port, "/readyz")
    assert status == 503
    assert json.loads(body) == {"ready": False, "problems": ["kafka: not connected"]}


def test_a_crashing_check_means_not_ready():
    def broken():
        raise RuntimeError("boom")

    health = HealthServer(0, broken, host="127.0.0.1").start()
    try:
        status, body = get(health.port, "/readyz")
    finally:
        health.stop()
    assert status == 503 and "boom" in json.loads(body)["problems"][0]


def test_metrics_in_prometheus_text_format(server):
    health, _ = server
    PROBE_COUNTER.inc(3)
    status, body = get(health.port, "/metrics")
    assert status == 200
    assert "gostream_test_probe_total 3.0" in body.decode()


def test_unknown_path_is_404(server):
    health, _ = server
    assert get(health.port, "/nope")[0] == 404


def test_a_batch_histogram_exposes_what_observe_one_by_one_does():
    # Values on a bound, between bounds, below the first and beyond the last (+Inf), in
    # three batches (one of them empty), against prometheus_client's own Histogram.
    batches = [[0.0, 0.01, 0.0100001, 0.3], [], [1.0, 2.5, 7.0, 1e9, 0.01, 0.5]]
    buckets = (0.01, 0.5, 1, 2.5, 5.0)
    reference, ours = CollectorRegistry(), CollectorRegistry()
    one_by_one = Histogram("h_seconds", "help", buckets=buckets, registry=reference)
    for value in (v for batch in batches for v in batch):
        one_by_one.observe(value)
    many = BatchHistogram("h_seconds", "help", buckets=buckets, registry=ours)
    for batch in batches:
        many.observe_many(batch)

    def exposition(registry) -> list[str]:
        return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]

    assert exposition(ours) == exposition(reference)
    assert 'h_seconds_bucket{le="0.01"} 3.0' in exposition(ours)
    assert 'h_seconds_count 10.0' in exposition(ours)


def test_a_batch_histogram_name_is_taken_in_its_registry():
    registry = CollectorRegistry()
    BatchHistogram("taken_seconds", "help", buckets=(1,), registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram("taken_seconds", "help", registry=registry)

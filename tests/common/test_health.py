import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import Counter

from gostream.common.health import HealthServer

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

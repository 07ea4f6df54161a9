"""The /api proxy is correct: the request target reaches the api as the client sent it,
X-Forwarded-For is appended to (never overwritten), X-Forwarded-Proto and -Host are set,
the api believes them only from its trusted proxies (ProxyFix), and the api's /metrics,
/readyz and /healthz are not reachable through /api.

Everything is a real process: the session's api and frontend, and for the checks of what
exactly arrives, a frontend in front of a plain socket server that records each request
and a second api with its access log on.
"""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import json
import threading

import pytest

from stack import components as c
from stack.process import Process
from tests.conftest import TEST_PORTS, spare_port, wait_for

# Targets whose decoded path differs from the raw one: re-sending the decoded path turns
# %3F into a query, %23 into a fragment, %2F into a path separator.
RAW_TARGETS = (
    "/candles%3Fsymbol%3DETH-USDT?interval=1m&limit=3",
    "/candles%23x?limit=2",
    "/candles%2F?limit=2",
    "/stats%3Fsymbol%3DBTC-USDT",
    "/candles?symbol=ETH%2DUSDT&interval=5m&limit=2",
    "/candles?symbol=BTC-USDT&interval=1m&limit=2&x=%26%3D%23",
)


def raw_get(port: int, target: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET ``target`` byte for byte (http.client normalises nothing)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", target, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Recorder(http.server.ThreadingHTTPServer):
    """A stand-in api: answers 200 {} and keeps (request target, headers) of each request."""

    daemon_threads = True

    def __init__(self, port: int) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                recorder.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", port), Handler)


@pytest.fixture(scope="module")
def recorded(stack_dir):
    """(frontend port, recorder): a real frontend whose API_URL is the recorder."""
    recorder = Recorder(spare_port())
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    port = spare_port()
    ports = c.Ports(frontend=port, api=recorder.server_address[1])
    spec = c.frontend(ports, c.service_env(ports))
    spec.ready = lambda: c.http_ok(f"http://127.0.0.1:{port}/healthz")
    process = Process(spec, stack_dir / "logs" / "frontend-recorded").start().wait_ready(60)
    try:
        yield port, recorder
    finally:
        process.stop()
        recorder.shutdown()
        recorder.server_close()


def last_request(recorder: Recorder, count_before: int) -> tuple[str, dict[str, str]]:
    wait_for(lambda: len(recorder.seen) > count_before, 10, message="the request to reach the recorder")
    return recorder.seen[-1]


@pytest.mark.parametrize("target", RAW_TARGETS)
def test_the_raw_target_is_forwarded_as_received(recorded, target):
    port, recorder = recorded
    before = len(recorder.seen)
    status, _ = raw_get(port, "/api" + target)
    assert status == 200
    assert last_request(recorder, before)[0] == target


@pytest.mark.parametrize("target", RAW_TARGETS)
def test_the_api_answers_through_the_proxy_as_it_does_directly(frontend, target):
    """Against the real api: the same raw target gets the same answer on both ports."""
    direct = raw_get(TEST_PORTS.api, target)
    proxied = raw_get(TEST_PORTS.frontend, "/api" + target)
    assert proxied == direct, target


def test_forwarded_headers(recorded):
    port, recorder = recorded
    before = len(recorder.seen)
    raw_get(port, "/api/symbols", {"Host": "terminal.example.com:8443"})
    _, headers = last_request(recorder, before)
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "terminal.example.com:8443"
    assert headers["host"] != "terminal.example.com:8443", "the api is asked with its own Host"

    # Behind another proxy: that proxy's list is kept and this hop's view appended.
    before = len(recorder.seen)
    raw_get(port, "/api/symbols", {"Host": "gostream-frontend:8080", "X-Forwarded-For": "203.0.113.7, 10.0.0.5",
                                   "X-Forwarded-Proto": "https", "X-Forwarded-Host": "terminal.example.com"})
    _, headers = last_request(recorder, before)
    assert headers["x-forwarded-for"] == "203.0.113.7, 10.0.0.5, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "https, http"
    assert headers["x-forwarded-host"] == "terminal.example.com, gostream-frontend:8080"


PRIVATE = ("/api/metrics", "/api/readyz", "/api/healthz", "/api/metrics?x=1", "/api/readyz/", "/api/%6Detrics",
           "/api/%2Fmetrics", "/api/candles/../metrics", "/api/candles/%2E%2E/healthz", "/api/./readyz")


@pytest.mark.parametrize("target", PRIVATE)
def test_the_apis_own_endpoints_are_not_proxied(recorded, frontend, target):
    port, recorder = recorded
    before = len(recorder.seen)
    status, body = raw_get(port, target)
    assert status == 404 and json.loads(body) == {"error": "no such path"}, (status, body[:200])
    assert len(recorder.seen) == before, f"{target} reached the api as {recorder.seen[-1][0]}"
    # the same through the real pair: nothing of the api's metrics leaks
    status, body = raw_get(TEST_PORTS.frontend, target)
    assert status == 404 and b"gostream_api" not in body


def test_the_frontends_own_endpoints_still_answer(frontend):
    for path in ("/healthz", "/readyz"):
        status, body = raw_get(TEST_PORTS.frontend, path)
        assert status == 200, (path, body)
    status, body = raw_get(TEST_PORTS.frontend, "/metrics")
    assert status == 200 and b"gostream_frontend_requests_total" in body and b"gostream_api_" not in body


# -- the api's side: ProxyFix, trusted only from TRUSTED_PROXIES ------------------------------


def _api(stack_dir, name: str, **env: str) -> tuple[int, Process]:
    from gostream.common.schema import ensure_schema

    ensure_schema(f"http://127.0.0.1:{TEST_PORTS.questdb_http}")
    port = spare_port()
    ports = dataclasses.replace(TEST_PORTS, api=port)
    spec = c.api(ports, c.service_env(ports, LOG_LEVEL="INFO", ACCESS_LOG="1", **env))
    spec.ready = lambda: c.http_ok(f"http://127.0.0.1:{port}/healthz")
    return port, Process(spec, stack_dir / "logs" / name).start().wait_ready(60)


def _client_of(process: Process, marker: str) -> str:
    """The client address the api's access log gives for the request whose target holds ``marker``."""

    def find():
        for line in process.log_path.read_text(errors="replace").splitlines():
            try:
                message = json.loads(line).get("message", "")
            except ValueError:
                continue
            if marker in message:
                return message.split(" ", 1)[0]
        return None

    return wait_for(find, 10, message=f"the access-log line of {marker}")


@pytest.fixture(scope="module")
def trusting_api(questdb, stack_dir):
    """An api with the defaults (trusts 1 hop from loopback), access log on."""
    port, process = _api(stack_dir, "api-trusting")
    yield port, process
    process.stop()


@pytest.fixture(scope="module")
def distrusting_api(questdb, stack_dir):
    """An api that trusts only proxies in 192.0.2.0/24: the tests' loopback peer is not one."""
    port, process = _api(stack_dir, "api-distrusting", TRUSTED_PROXIES="192.0.2.0/24")
    yield port, process
    process.stop()


def test_the_api_takes_the_client_from_a_trusted_proxy(trusting_api, stack_dir):
    api_port, api = trusting_api
    raw_get(api_port, "/symbols?m=direct-xff", {"X-Forwarded-For": "198.51.100.23"})
    assert _client_of(api, "m=direct-xff") == "198.51.100.23"
    raw_get(api_port, "/symbols?m=two-hops", {"X-Forwarded-For": "203.0.113.1, 198.51.100.24"})
    assert _client_of(api, "m=two-hops") == "198.51.100.24", "one hop trusted: the last address"
    raw_get(api_port, "/symbols?m=no-xff")
    assert _client_of(api, "m=no-xff") == "127.0.0.1"

    # Through a real frontend: a forged X-Forwarded-For from the browser is not believed,
    # the frontend's own view (the peer it saw) is.
    port = spare_port()
    ports = c.Ports(frontend=port, api=api_port)
    spec = c.frontend(ports, c.service_env(ports))
    spec.ready = lambda: c.http_ok(f"http://127.0.0.1:{port}/healthz")
    frontend = Process(spec, stack_dir / "logs" / "frontend-trusting").start().wait_ready(60)
    try:
        # (/symbols takes no parameters: the api answers 400, and logs the request like any other)
        raw_get(port, "/api/symbols?m=via-frontend", {"X-Forwarded-For": "6.6.6.6"})
        assert _client_of(api, "m=via-frontend") == "127.0.0.1"
    finally:
        frontend.stop()


def test_the_api_ignores_forwarded_headers_from_others(distrusting_api):
    api_port, api = distrusting_api
    raw_get(api_port, "/symbols?m=untrusted-xff", {"X-Forwarded-For": "198.51.100.23"})
    assert _client_of(api, "m=untrusted-xff") == "127.0.0.1"

"""The frontend: the page, its assets, and the /api proxy (SSE unbuffered)."""

from __future__ import annotations

import http.client
import time
import urllib.request

from stack import components as c
from stack.process import Process
from tests.api.pipeline import get
from tests.conftest import TEST_PORTS, spare_port

PORT = TEST_PORTS.frontend


def fetch(path: str) -> tuple[int, dict, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def test_page_and_assets(frontend):
    status, headers, body = fetch("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"<title>Goosey LLC - QuestDB View</title>" in body
    for asset in ("/static/app.js", "/static/style.css", "/static/vendor/lightweight-charts.standalone.production.js"):
        status, _, data = fetch(asset)
        assert status == 200 and len(data) > 1000, asset
    assert get(PORT, "/readyz") == (200, {"ready": True})


def test_api_is_proxied(frontend):
    for path in ("/candles?interval=5m&limit=3", "/symbols", "/openapi.json", "/candles?limit=0", "/stats?symbol=x",
                 "/completeness?symbol=NOSUCH-USDT&from=0&to=4102444800", "/completeness?from=2&to=1"):
        assert get(PORT, f"/api{path}") == get(TEST_PORTS.api, path), path
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/api/candles", method="POST")
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("POST was proxied")
    except urllib.error.HTTPError as exc:
        assert exc.code == 405


def test_stream_is_relayed_unbuffered(frontend):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    try:
        started = time.monotonic()
        conn.request("GET", "/api/stream?symbol=BTC-USDT&interval=1m")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/event-stream")
        lines = []
        while "event: hello" not in lines:
            lines.append(response.fp.readline().decode().strip())
        # The first bytes arrive at once; keep-alives (1 s in tests) arrive one by one.
        assert time.monotonic() - started < 5
        keepalive_at = None
        while keepalive_at is None:
            if response.fp.readline().decode().startswith(": keep-alive"):
                keepalive_at = time.monotonic()
        assert keepalive_at - started < 8
    finally:
        conn.close()


def test_api_down_gives_502(stack_dir):
    dead, port = spare_port(), spare_port()
    ports = c.Ports(frontend=port, api=dead)
    spec = c.frontend(ports, c.service_env(ports))
    spec.ready = lambda: c.http_ok(f"http://127.0.0.1:{port}/healthz")
    process = Process(spec, stack_dir / "logs" / "frontend-no-api").start().wait_ready(60)
    try:
        status, body = get(port, "/api/candles")
        assert status == 502 and "unreachable" in body["error"]
        status, body = get(port, "/readyz")
        assert status == 503 and any("unreachable" in p for p in body["problems"])
        assert c.http_ok(f"http://127.0.0.1:{port}/")
    finally:
        process.stop()

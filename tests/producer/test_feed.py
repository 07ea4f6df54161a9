"""What the producer says when it cannot reach the exchange: real failures where they can
be made on this machine (loopback only), the library's own exception otherwise."""

import asyncio
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from websockets.asyncio.client import connect

from gostream.producer.connection import connect_failure
from tests.conftest import spare_port


def failure(url: str) -> BaseException:
    async def attempt():
        async with connect(url, open_timeout=5):
            pass

    with pytest.raises(Exception) as caught:
        asyncio.run(attempt())
    return caught.value


def test_a_closed_port_is_refused():
    port = spare_port()
    url = f"ws://127.0.0.1:{port}/ws/v5/business"
    assert connect_failure(failure(url), url) == f"refused: nothing accepts connections at 127.0.0.1:{port}"


@pytest.fixture
def plain_http():
    class Forbidden(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", spare_port()), Forbidden)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_tls_to_a_plain_server_is_a_tls_failure(plain_http):
    url = f"wss://127.0.0.1:{plain_http}/ws/v5/business"
    exc = failure(url)
    assert isinstance(exc, ssl.SSLError)
    assert connect_failure(exc, url).startswith(f"TLS: handshake with 127.0.0.1:{plain_http} failed")


def test_a_proxy_answering_403_is_named(plain_http):
    url = f"ws://127.0.0.1:{plain_http}/ws/v5/business"
    assert connect_failure(failure(url), url) == f"HTTP 403 from {url} (a proxy or firewall in the way?)"


def test_dns_and_timeouts():
    url = "wss://ws.okx.com:8443/ws/v5/business"
    # Made, not provoked: a test never looks up a name outside this machine.
    dns = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert connect_failure(dns, url) == "DNS: cannot resolve ws.okx.com (Name or service not known)"
    assert connect_failure(TimeoutError(), url) == "timeout: no answer from ws.okx.com:8443 (a firewall dropping packets?)"

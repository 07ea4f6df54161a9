"""A small streaming reverse proxy to the api (stdlib http.client).

Bodies are relayed as they arrive (``read1``), so Server-Sent Events reach the browser
unbuffered; when the browser goes away the upstream connection is closed too.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

from flask import Response, request

from gostream.frontend import metrics

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) are never forwarded; the WSGI server frames the body itself.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length"}
FORWARD_REQUEST = ("Accept", "Accept-Language", "Cache-Control", "Last-Event-ID", "User-Agent")


class Upstream:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout_s)

    def forward(self, path: str) -> Response:
        """Send the current GET/HEAD to the api's ``path`` and relay the answer."""
        target = f"{self.prefix}/{path}"
        if request.query_string:
            target += "?" + request.query_string.decode("latin-1")
        headers = {name: request.headers[name] for name in FORWARD_REQUEST if name in request.headers}
        headers["X-Forwarded-For"] = request.remote_addr or ""
        headers["X-Forwarded-Proto"] = request.scheme
        conn = self._connect()
        try:
            conn.request(request.method, target, headers=headers)
            upstream = conn.getresponse()
        except OSError as exc:
            conn.close()
            metrics.PROXY_ERRORS.labels("unreachable").inc()
            log.warning("api unreachable", extra={"error": str(exc), "api": f"{self.host}:{self.port}"})
            return Response('{"error":"the api is unreachable"}', status=502, mimetype="application/json")

        out_headers = [(k, v) for k, v in upstream.getheaders() if k.lower() not in HOP_BY_HOP]
        streaming = upstream.getheader("Content-Type", "").startswith("text/event-stream")
        if streaming:
            out_headers.append(("X-Accel-Buffering", "no"))
        return Response(
            _relay(conn, upstream, streaming), status=upstream.status, headers=out_headers, direct_passthrough=True
        )


def _relay(conn: http.client.HTTPConnection, upstream: http.client.HTTPResponse, streaming: bool = False) -> Iterator[bytes]:
    if streaming:
        metrics.STREAMS.inc()
    try:
        while True:
            try:
                chunk = upstream.read1(65536)
            except (OSError, http.client.HTTPException):
                metrics.PROXY_ERRORS.labels("interrupted").inc()
                return  # the api went away mid-body: end ours, the browser reconnects
            if not chunk:
                return
            yield chunk
    finally:
        if streaming:
            metrics.STREAMS.dec()
        conn.close()

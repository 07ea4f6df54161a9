"""A small streaming reverse proxy to the api (stdlib http.client).

Bodies are relayed as they arrive (``read1``), so Server-Sent Events reach the browser
unbuffered; when the browser goes away the upstream connection is closed too.

The request target goes to the api as the client sent it, minus the leading ``/api``
segment: the raw path and query (gunicorn's ``RAW_URI``), never the decoded path re-sent,
which would turn ``/api/candles%3Fsymbol%3DETH-USDT`` into a query. This hop appends
itself to ``X-Forwarded-For`` (the peer's address), ``X-Forwarded-Proto`` and
``X-Forwarded-Host`` (the scheme and Host it was asked with); the api believes the last
``TRUSTED_PROXY_HOPS`` of them, and only from its ``TRUSTED_PROXIES``.
"""

from __future__ import annotations

import http.client
import logging
import re
from collections.abc import Iterator
from urllib.parse import quote, unquote, urlsplit

from flask import Response, request

from gostream.frontend import metrics

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) are never forwarded; the WSGI server frames the body itself.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length"}
FORWARD_REQUEST = ("Accept", "Accept-Language", "Cache-Control", "Last-Event-ID", "User-Agent")
# The api's operational endpoints stay inside the cluster: not reachable through /api.
PRIVATE = frozenset({"metrics", "readyz", "healthz"})
_UNSAFE = re.compile(r"[^\x21-\x7e]+")


def private(path: str) -> bool:
    """True for an api path (decoded, as routed) that must not be proxied: the api's health
    and metrics endpoints, and any path with a dot segment (which a server on the way could
    resolve to one of them)."""
    segments = path.split("/")
    first = next((s for s in segments if s), "")
    return first in PRIVATE or any(s in (".", "..") for s in segments)


def raw_target(environ: dict) -> str | None:
    """The request target as received, without its leading ``/api`` segment: path still
    percent-encoded, query untouched. None when that segment is not ``api``."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:  # not gunicorn: rebuild it from the decoded path (WSGI gives latin-1 bytes)
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        raw = quote(path.encode("latin-1"), safe="/:@!$&'()*+,;=-._~")
        if environ.get("QUERY_STRING"):
            raw += "?" + environ["QUERY_STRING"]
    if not raw.startswith("/"):  # absolute-form (http://host/api/...)
        parts = urlsplit(raw)
        raw = (parts.path or "/") + ("?" + parts.query if "?" in raw else "")
    # Bytes beyond printable ASCII (gunicorn hands them over as latin-1) go on percent-encoded.
    raw = _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("latin-1", "replace")), raw)
    path, mark, query = raw.partition("?")
    segments = path.split("/", 2)  # "", "api", the rest
    if len(segments) < 3 or unquote(segments[1]) != "api":
        return None
    return "/" + segments[2] + mark + query


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

    def forward(self) -> Response:
        """Send the current GET/HEAD (under /api) to the api and relay the answer."""
        target = raw_target(request.environ)
        if target is None:
            return Response('{"error":"no such path"}', status=404, mimetype="application/json")
        target = self.prefix + target
        headers = {name: request.headers[name] for name in FORWARD_REQUEST if name in request.headers}
        headers["X-Forwarded-For"] = _append(request.headers.get("X-Forwarded-For"), request.remote_addr or "unknown")
        headers["X-Forwarded-Proto"] = _append(request.headers.get("X-Forwarded-Proto"), request.scheme)
        headers["X-Forwarded-Host"] = _append(request.headers.get("X-Forwarded-Host"), request.host)
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


def _append(before: str | None, value: str) -> str:
    """A forwarding header's list with this hop's value added at the end."""
    before = (before or "").strip().strip(",").strip()
    return f"{before}, {value}" if before else value


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

"""/healthz, /readyz and /metrics, as one WSGI app every service serves.

Readiness is a function returning the list of current problems: empty means ready.
Producer and consumer serve the app on their own port with ``serve``; api and
frontend mount the same app inside their Flask servers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from itertools import accumulate
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

Problems = Callable[[], list[str]]
HEALTH_PATHS = ("/healthz", "/readyz", "/metrics")

log = logging.getLogger(__name__)


class BatchHistogram:
    """A Prometheus histogram observed a batch of values at a time (a flush's or a Kafka
    acknowledgement's trades): the values are counted with one lock per batch, where a
    ``Histogram.observe()`` per value took two locks each (~10 % of the consumer's CPU),
    and exposed at scrape time through prometheus_client's collector interface. Its
    exposition is a ``Histogram``'s without the ``_created`` sample."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float],
                 registry: CollectorRegistry | None = REGISTRY) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = sorted({float(bound) for bound in buckets} | {math.inf})
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        counts = [0] * len(self._bounds)
        total = 0.0
        for value in values:
            counts[bisect_left(self._bounds, value)] += 1  # the first bound >= value, as observe() does
            total += value
        with self._lock:
            self._counts = [mine + new for mine, new in zip(self._counts, counts)]
            self._sum += total

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self) -> list[HistogramMetricFamily]:
        with self._lock:
            counts, total = self._counts, self._sum
        cumulative = accumulate(counts)
        buckets = [(floatToGoString(bound), count) for bound, count in zip(self._bounds, cumulative)]
        return [HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)]


def _json(start_response, status: str, body: dict) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def health_app(problems: Problems, registry: CollectorRegistry = REGISTRY):
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _json(start_response, "200 OK", {"alive": True})
        if path == "/readyz":
            try:
                found = problems()
            except Exception as exc:  # a readiness check must never crash the server
                found = [f"readiness check failed: {exc}"]
            if found:
                return _json(start_response, "503 Service Unavailable", {"ready": False, "problems": found})
            return _json(start_response, "200 OK", {"ready": True})
        if path == "/metrics":
            return metrics(environ, start_response)
        return _json(start_response, "404 Not Found", {"error": f"no such path {path}"})

    return app


def process_registry() -> CollectorRegistry:
    """What /metrics should show: the default registry, or, when gunicorn workers share
    PROMETHEUS_MULTIPROC_DIR, every worker's samples added up."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        collecting = CollectorRegistry()
        multiprocess.MultiProcessCollector(collecting)
        return collecting
    return REGISTRY


def mount_health(app, problems: Problems) -> None:
    """Serve the health paths from a Flask app's own port, ahead of its routes."""
    health = health_app(problems, process_registry())
    inner = app.wsgi_app

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") in HEALTH_PATHS:
            return health(environ, start_response)
        return inner(environ, start_response)

    app.wsgi_app = wsgi


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # probes every few seconds would flood the log
        pass


class HealthServer:
    """The health app on its own port, in a daemon thread."""

    def __init__(self, port: int, problems: Problems, host: str = "0.0.0.0") -> None:
        self._server = make_server(
            host, port, health_app(problems), server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health and metrics listening", extra={"port": self.port})
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def kafka_connected(client) -> bool:
    """True while a kafka-python producer or consumer holds a broker connection.

    (kafka-python's ``bootstrap_connected()`` only reports an ongoing bootstrap.)
    """
    for group, values in client.metrics().items():
        if group in ("producer-metrics", "consumer-metrics"):
            return values.get("connection-count", 0) > 0
    return False

"""The api's Prometheus metrics (prefix gostream_api_).

Under gunicorn with several workers each worker is its own process: the config sets
PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client, every worker
writes its samples there, and /metrics (served by whichever worker) adds them all up.
With one process the default registry is used as is.

Labels stay few: ``endpoint`` is the route pattern (``/candles``; ``other`` for
unknown paths), never a query parameter.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()

REQUESTS = Counter("gostream_api_requests_total", "HTTP requests answered", ["endpoint", "status"])
LATENCY = Histogram(
    "gostream_api_request_duration_seconds",
    "Time to answer a request (for /stream: until the event stream starts)",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
DB_QUERY = Histogram(
    "gostream_api_db_query_duration_seconds",
    "Time QuestDB took to answer one query over the PostgreSQL wire (rows fetched included)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
STREAMS = Gauge("gostream_api_open_streams", "Open /stream (Server-Sent Events) connections", multiprocess_mode="livesum")
STREAM_EVENTS = Counter("gostream_api_stream_events_total", "Server-sent events written", ["event"])
QUESTDB_ERRORS = Counter("gostream_api_questdb_errors_total", "Queries QuestDB could not answer")


def registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        collecting = CollectorRegistry()
        multiprocess.MultiProcessCollector(collecting)
        return collecting
    return REGISTRY

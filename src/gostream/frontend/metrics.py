"""The frontend's Prometheus metrics (prefix gostream_frontend_).

As in the api, several gunicorn workers share PROMETHEUS_MULTIPROC_DIR (set by the
gunicorn config) and /metrics adds every worker's samples up. ``route`` is one of
page, static, api and other: never a path.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()

REQUESTS = Counter("gostream_frontend_requests_total", "HTTP requests answered", ["route", "status"])
LATENCY = Histogram(
    "gostream_frontend_request_duration_seconds",
    "Time until the response starts (for /api: the api's answer included; streamed bodies not)",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PROXY_ERRORS = Counter(
    "gostream_frontend_proxy_errors_total",
    "Proxied /api requests that failed: unreachable (no answer, 502) or interrupted (the api went away mid-body)",
    ["reason"],
)
for _reason in ("unreachable", "interrupted"):  # known up front: a rate() of 0, not "no data"
    PROXY_ERRORS.labels(_reason)
STREAMS = Gauge(
    "gostream_frontend_open_streams", "Event streams being relayed from the api", multiprocess_mode="livesum"
)


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

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

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
STREAM_EVENTS = Counter("gostream_api_stream_events_total", "Server-sent events sent to streams", ["event"])
STREAM_FEEDS = Gauge("gostream_api_stream_feeds", "Symbols polled for /stream (one poller per symbol with streams, per worker)",
                     multiprocess_mode="livesum")
STREAMS_REFUSED = Counter("gostream_api_streams_refused_total",
                          "/stream requests answered 503 because the worker holds STREAM_MAX streams")
QUESTDB_ERRORS = Counter("gostream_api_questdb_errors_total", "Queries QuestDB could not answer")
# The /candles response cache (gostream.api.cache), per worker, summed over workers.
CANDLES_CACHE = Counter(
    "gostream_api_candles_cache_requests_total",
    "/candles requests by where the body came from: hit (a cached body within CANDLES_CACHE_MS), "
    "miss (this request queried QuestDB), shared (waited for the query another request had started)",
    ["result"],
)
CANDLES_CACHE_REFRESHES = Counter(
    "gostream_api_candles_cache_refreshes_total",
    "Background re-queries of a cached /candles body past half its bound (stale-while-revalidate)",
)
CANDLES_CACHE_ENTRIES = Gauge("gostream_api_candles_cache_entries", "/candles bodies held in the cache",
                              multiprocess_mode="livesum")
CANDLES_CACHE_BYTES = Gauge("gostream_api_candles_cache_bytes", "Bytes of the /candles bodies held in the cache",
                            multiprocess_mode="livesum")

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # With gunicorn's preload_app these metrics are made in the master, and a worker writes
    # its own samples file only when it first changes one; until then /metrics would lack
    # every series of that worker. Writing a zero at fork puts them all there at once.
    os.register_at_fork(after_in_child=lambda: QUESTDB_ERRORS.inc(0))


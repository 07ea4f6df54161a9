"""gunicorn settings for the api: ``gunicorn -c python:gostream.api.gunicorn_conf gostream.api.wsgi:app``.

Worker model: gevent. Each open /stream is a greenlet waiting on its symbol's feed (~20 kB
of RSS per stream, bench P7), not one of 64 threads: one worker holds STREAM_MAX
(10,000) streams, and /healthz, /readyz, /metrics and /candles are each served by a
greenlet of their own at once, never queued behind viewers. The worker accepts
STREAM_MAX + 1,000 connections, so requests and probes always have room above the
streams. psycopg2 is made cooperative (psycogreen: it waits for QuestDB through gevent's
loop), and the standard library is patched here, before the app (and, with more than one
worker, the preloaded app in the master) makes its locks and pool.

Defaults: port 3000, 1 worker. One worker: the work per request is a few hundred µs of
Python under one GIL either way, and on a 2-core machine shared with QuestDB a second
worker bought throughput (3,351 vs 2,283 cached /candles per s) at the price of the
latency tail (p99 40 vs 21 ms, bench P4) and memory. With WEB_CONCURRENCY > 1 the app is
preloaded in the master and the workers share it; each worker has its own feeds and cap.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import signal  # noqa: E402

from psycogreen.gevent import patch_psycopg  # noqa: E402

from gostream.common.gunicorn import child_exit, on_exit, on_starting, pre_fork, settings  # noqa: E402

import resource  # noqa: E402

patch_psycopg()

_stream_max = int(os.environ.get("STREAM_MAX") or 10_000)
# A stream is a socket: the soft limit on open files (often 1,024) goes up to the hard one.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = _stream_max + 2000 if _hard == resource.RLIM_INFINITY else min(_hard, _stream_max + 2000)
if _soft != resource.RLIM_INFINITY and _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))
globals().update(settings("api", port=3000, workers=1, threads=1, graceful_timeout=5, preload=True,
                          worker_class="gevent", worker_connections=_stream_max + 1000))
__all__ = ["child_exit", "on_exit", "on_starting", "post_worker_init", "pre_fork"]


def post_worker_init(worker) -> None:
    # On SIGTERM end the open event streams first, so the worker exits at once
    # instead of waiting out graceful_timeout for streams that never finish.
    previous = signal.getsignal(signal.SIGTERM)

    def stop_streams(signum, frame):
        services = getattr(worker.wsgi, "extensions", {}).get("gostream")
        if services is not None:
            services.hub.stop()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, stop_streams)

"""gunicorn settings for the api: ``gunicorn -c python:gostream.api.gunicorn_conf gostream.api.wsgi:app``.

Defaults: port 3000, 1 worker of 64 threads (see gostream.common.gunicorn). One worker:
the work per request is a few hundred µs of Python under one GIL either way, and on a
2-core machine shared with QuestDB a second worker bought throughput (3,351 vs 2,283
cached /candles per s) at the price of the latency tail (p99 40 vs 21 ms, bench P4) and
memory (PSS 65 vs 60 MB, RSS 150 vs 80 MB idle). 64 threads: each open /stream holds one.
With WEB_CONCURRENCY > 1 the app is preloaded in the master and the workers share it.
"""

from __future__ import annotations

import signal

from gostream.common.gunicorn import child_exit, on_exit, on_starting, pre_fork, settings

globals().update(settings("api", port=3000, workers=1, threads=64, graceful_timeout=5, preload=True))
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

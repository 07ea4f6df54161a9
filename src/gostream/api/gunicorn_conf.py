"""gunicorn settings for the api: ``gunicorn -c python:gostream.api.gunicorn_conf gostream.api.wsgi:app``.

Defaults: port 3000, 2 workers of 32 threads (see gostream.common.gunicorn).
"""

from __future__ import annotations

import signal

from gostream.common.gunicorn import child_exit, on_exit, on_starting, settings

globals().update(settings("api", port=3000, workers=2, threads=32, graceful_timeout=5))
__all__ = ["child_exit", "on_exit", "on_starting", "post_worker_init"]


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

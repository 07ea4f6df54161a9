"""gunicorn settings for the frontend: ``gunicorn -c python:gostream.frontend.gunicorn_conf gostream.frontend.wsgi:app``.

Defaults: port 8080, 1 worker of 64 threads: the work is waiting on the api, and each
relayed event stream holds a thread (see gostream.common.gunicorn).
"""

from __future__ import annotations

from gostream.common.gunicorn import child_exit, on_exit, on_starting, settings

globals().update(settings("frontend", port=8080, workers=1, threads=64, graceful_timeout=3))
__all__ = ["child_exit", "on_exit", "on_starting"]

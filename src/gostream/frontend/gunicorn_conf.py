"""gunicorn settings for the frontend: ``gunicorn -c python:gostream.frontend.gunicorn_conf gostream.frontend.wsgi:app``.

Defaults: port 8080, 1 worker of 64 threads: the work is waiting on the api, and each
relayed event stream holds a thread (see gostream.common.gunicorn).
"""

from __future__ import annotations

from gostream.common.gunicorn import child_exit, on_exit, on_starting, settings

globals().update(settings("frontend", port=8080, workers=1, threads=64, graceful_timeout=3))
# The scheme is the connection's own, never taken from a client's X-Forwarded-Proto (gunicorn
# would, from loopback): the /api proxy appends this hop's real view to the list it got.
secure_scheme_headers: dict[str, str] = {}
__all__ = ["child_exit", "on_exit", "on_starting"]

"""gunicorn settings shared by the api and the frontend (both serve event streams).

A service picks its worker model: threaded workers (gthread, the frontend), where a
long-lived stream occupies a thread, or gevent (the api), where it is a greenlet of a few
kilobytes and one worker holds thousands (the config module then patches the standard
library before anything else is imported). Either way the worker's heartbeat does not
depend on requests finishing.
With more than one worker, Prometheus metrics go through PROMETHEUS_MULTIPROC_DIR (set
here, before anything imports prometheus_client) so /metrics counts every worker.

With ``preload`` and more than one worker the app is imported and built once in the
master and the workers are forked from it, sharing those pages (copy-on-write) instead
of each importing Flask, SQLAlchemy and the rest again: a second worker then costs a few
MB, not ~40. The app must not open connections or start threads while it is built (the
api's engine pool and feed threads start in the worker), and objects made before the
fork are moved out of the garbage collector's reach (``gc.freeze``) so that a collection
in a worker does not write to, and so copy, the shared pages.

glibc gives threads malloc arenas of their own (up to 8 per core), each keeping the memory
freed in it: with dozens of request threads that is ~10 MB more per worker under load for
no gain (the GIL serialises Python's allocations anyway), so a process is held to
``MALLOC_ARENA_MAX`` (default 2) arenas.

Environment: ``HOST`` (0.0.0.0), ``PORT``, ``WEB_CONCURRENCY`` (workers), ``GUNICORN_THREADS``
(threads per worker; each open stream holds one), ``LOG_LEVEL``, ``ACCESS_LOG``,
``SHUTDOWN_TIMEOUT_S`` (the most the graceful shutdown may take; the chart sets it).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile

from gunicorn.glogging import Logger

_OWN_METRICS_DIR: list[str] = []


def limit_malloc_arenas() -> None:
    """mallopt(M_ARENA_MAX) in this process (and so in the workers it forks) when the C
    library is glibc; the environment variable itself is only read when a process starts."""
    try:
        import ctypes

        arenas = int(os.environ.get("MALLOC_ARENA_MAX") or 2)
        ctypes.CDLL(None).mallopt(ctypes.c_int(-8), ctypes.c_int(arenas))  # -8: M_ARENA_MAX
    except (ImportError, OSError, AttributeError, ValueError):  # not glibc: its allocator, its rules
        pass


class AccessLogWhenAsked(Logger):
    """gunicorn's logger, minus the access-log line it builds (~10 % of a small request's
    CPU) and then drops when the ``gunicorn.access`` logger is above INFO (ACCESS_LOG off)."""

    @property
    def access_log_enabled(self) -> bool:
        return self.access_log.isEnabledFor(logging.INFO) and super().access_log_enabled

    def access(self, resp, req, environ, request_time) -> None:
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)


def settings(service: str, port: int, workers: int, threads: int, graceful_timeout: int, preload: bool = False,
             worker_class: str = "gthread", worker_connections: int = 1000) -> dict:
    """The gunicorn settings for ``service``; a config module does globals().update() with them.
    ``threads`` counts for gthread, ``worker_connections`` (connections a worker holds at once)
    for gevent."""
    limit_malloc_arenas()
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    worker_count = int(os.environ.get("WEB_CONCURRENCY", str(workers)))
    if worker_count > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"gostream-{service}-metrics-")
        _OWN_METRICS_DIR.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    access = "INFO" if os.environ.get("ACCESS_LOG", "").lower() in ("1", "true", "yes") else "WARNING"
    return {
        "bind": f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', str(port))}",
        "workers": worker_count,
        "worker_class": worker_class,
        "threads": int(os.environ.get("GUNICORN_THREADS", str(threads))),
        "worker_connections": worker_connections,
        "timeout": 30,
        # Open event streams never finish by themselves; browsers reconnect. Never longer than
        # what the pod's grace period leaves after its preStop sleep (SHUTDOWN_TIMEOUT_S).
        "graceful_timeout": min(graceful_timeout, float(os.environ.get("SHUTDOWN_TIMEOUT_S") or graceful_timeout)),
        "keepalive": 5,
        "proc_name": f"gostream-{service}",
        # With one worker there is nothing to share, and the master would hold a copy of the app.
        "preload_app": preload and worker_count > 1,
        "accesslog": None,
        "logger_class": AccessLogWhenAsked,
        "logconfig_dict": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": "gostream.common.logs.JsonFormatter", "service": service}},
            "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"}},
            "root": {"level": level, "handlers": ["stdout"]},
            "loggers": {
                "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
                # One line per request only when asked for: probes would flood the log.
                "gunicorn.access": {"level": access, "handlers": ["stdout"], "propagate": False},
            },
        },
    }


def on_starting(server) -> None:
    # Samples of an earlier run would be counted again.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and os.path.isdir(directory):
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.unlink(os.path.join(directory, name))


def pre_fork(server, worker) -> None:
    # Everything the master made so far (the preloaded app) stays as it is in the workers.
    gc.freeze()


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    for directory in _OWN_METRICS_DIR:
        shutil.rmtree(directory, ignore_errors=True)

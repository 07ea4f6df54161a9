"""gunicorn settings for the frontend: ``gunicorn -c python:gostream.frontend.gunicorn_conf gostream.frontend.wsgi:app``.

Environment: ``PORT`` (8080), ``HOST`` (0.0.0.0), ``WEB_CONCURRENCY`` (1: the work is
waiting on the api, threads are enough), ``GUNICORN_THREADS`` (64: each open event
stream holds one), ``LOG_LEVEL``, ``ACCESS_LOG``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"  # streams are relayed as they arrive, each in its own thread
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
timeout = 30
graceful_timeout = 3  # open event streams never finish by themselves; browsers reconnect
keepalive = 5
proc_name = "gostream-frontend"

_level = os.environ.get("LOG_LEVEL", "INFO").upper()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "gostream.common.logs.JsonFormatter", "service": "frontend"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"}},
    "root": {"level": _level, "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": _level, "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {
            "level": "INFO" if os.environ.get("ACCESS_LOG", "").lower() in ("1", "true", "yes") else "WARNING",
            "handlers": ["stdout"],
            "propagate": False,
        },
    },
}

_OWN_METRICS_DIR = False
if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gostream-frontend-metrics-")
    _OWN_METRICS_DIR = True


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

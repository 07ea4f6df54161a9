"""gunicorn settings shared by the api and the frontend (both serve event streams).

Threaded workers (gthread) keep Server-Sent Events flowing: a long-lived stream only
occupies a thread, and the worker's heartbeat does not depend on requests finishing.
With more than one worker, Prometheus metrics go through PROMETHEUS_MULTIPROC_DIR (set
here, before anything imports prometheus_client) so /metrics counts every worker.

Environment: ``HOST`` (0.0.0.0), ``PORT``, ``WEB_CONCURRENCY`` (workers), ``GUNICORN_THREADS``
(threads per worker; each open stream holds one), ``LOG_LEVEL``, ``ACCESS_LOG``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_OWN_METRICS_DIR: list[str] = []


def settings(service: str, port: int, workers: int, threads: int, graceful_timeout: int) -> dict:
    """The gunicorn settings for ``service``; a config module does globals().update() with them."""
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    worker_count = int(os.environ.get("WEB_CONCURRENCY", str(workers)))
    if worker_count > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"gostream-{service}-metrics-")
        _OWN_METRICS_DIR.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    access = "INFO" if os.environ.get("ACCESS_LOG", "").lower() in ("1", "true", "yes") else "WARNING"
    return {
        "bind": f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', str(port))}",
        "workers": worker_count,
        "worker_class": "gthread",
        "threads": int(os.environ.get("GUNICORN_THREADS", str(threads))),
        "timeout": 30,
        # Open event streams never finish by themselves; browsers reconnect.
        "graceful_timeout": graceful_timeout,
        "keepalive": 5,
        "proc_name": f"gostream-{service}",
        "accesslog": None,
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


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    for directory in _OWN_METRICS_DIR:
        shutil.rmtree(directory, ignore_errors=True)

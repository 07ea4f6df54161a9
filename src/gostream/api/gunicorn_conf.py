"""gunicorn settings for the api: ``gunicorn -c python:gostream.api.gunicorn_conf gostream.api.wsgi:app``.

Environment: ``PORT`` (3000), ``HOST`` (0.0.0.0), ``WEB_CONCURRENCY`` (worker processes,
2), ``GUNICORN_THREADS`` (threads per worker, 32: each open /stream holds one),
``LOG_LEVEL``.

Threaded workers (gthread) keep Server-Sent Events flowing: a long-lived stream only
occupies a thread, and the worker's heartbeat does not depend on requests finishing.
With more than one worker, Prometheus metrics go through PROMETHEUS_MULTIPROC_DIR
(set here before anything imports prometheus_client) so /metrics counts every worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '3000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
timeout = 30
graceful_timeout = 5
keepalive = 5
proc_name = "gostream-api"
accesslog = None

_level = os.environ.get("LOG_LEVEL", "INFO").upper()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "gostream.common.logs.JsonFormatter", "service": "api"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"}},
    "root": {"level": _level, "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": _level, "handlers": ["stdout"], "propagate": False},
        # One line per request only when asked for (ACCESS_LOG=true): probes would flood it.
        "gunicorn.access": {
            "level": "INFO" if os.environ.get("ACCESS_LOG", "").lower() in ("1", "true", "yes") else "WARNING",
            "handlers": ["stdout"],
            "propagate": False,
        },
    },
}

_OWN_METRICS_DIR = False
if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gostream-api-metrics-")
    _OWN_METRICS_DIR = True


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


def on_exit(server) -> None:
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

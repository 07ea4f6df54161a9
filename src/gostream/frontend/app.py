"""The Flask app factory of the frontend: the terminal, the /api proxy, health and metrics."""

from __future__ import annotations

import http.client
import logging
import time
from pathlib import Path

from flask import Flask, Response, request, send_from_directory
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, disable_created_metrics

from gostream.common.health import HEALTH_PATHS, health_app
from gostream.common.settings import load
from gostream.frontend.proxy import Upstream
from gostream.frontend.settings import FrontendSettings

log = logging.getLogger("gostream.frontend")

STATIC = Path(__file__).resolve().parent / "static"
VENDOR_JS = STATIC / "vendor" / "lightweight-charts.standalone.production.js"
TITLE = "Goosey LLC - QuestDB View"

disable_created_metrics()
REQUESTS = Counter("gostream_frontend_requests_total", "HTTP requests answered", ["route", "status"])
API_LATENCY = Histogram(
    "gostream_frontend_api_seconds", "Time until the api's answer starts (proxied, not counting streaming)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


def _registry() -> CollectorRegistry:
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        collecting = CollectorRegistry()
        multiprocess.MultiProcessCollector(collecting)
        return collecting
    return REGISTRY


def create_app(settings: FrontendSettings | None = None) -> Flask:
    settings = settings or load(FrontendSettings)
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    upstream = Upstream(settings.api_url, settings.api_timeout_s)

    @app.get("/")
    def index() -> Response:
        response = send_from_directory(STATIC, "index.html", max_age=0)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.route("/api/", defaults={"path": ""}, methods=["GET", "HEAD"])
    @app.route("/api/<path:path>", methods=["GET", "HEAD"])
    def api(path: str) -> Response:
        started = time.perf_counter()
        response = upstream.forward(path)
        API_LATENCY.observe(time.perf_counter() - started)
        return response

    @app.errorhandler(404)
    def not_found(_exc) -> Response:
        return Response('{"error":"no such path"}', status=404, mimetype="application/json")

    @app.errorhandler(405)
    def not_allowed(_exc) -> Response:
        return Response('{"error":"method not allowed (the api is read-only)"}', status=405, mimetype="application/json")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.error("unexpected error", exc_info=exc, extra={"path": request.path})
        return Response('{"error":"the frontend could not answer this request"}', status=503, mimetype="application/json")

    @app.after_request
    def count(response: Response) -> Response:
        route = "api" if request.path.startswith("/api/") else ("static" if request.path.startswith("/static/") else "page")
        REQUESTS.labels(route, str(response.status_code)).inc()
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    def problems() -> list[str]:
        found = []
        if not VENDOR_JS.exists():
            found.append(f"{VENDOR_JS.name} missing: run `make frontend-assets`")
        conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=2)
        try:
            conn.request("GET", f"{upstream.prefix}/healthz")
            if conn.getresponse().status != 200:
                found.append(f"api at {settings.api_url} is not healthy")
        except OSError as exc:
            found.append(f"api at {settings.api_url} unreachable: {exc}")
        finally:
            conn.close()
        return found

    health = health_app(problems, _registry())
    inner = app.wsgi_app

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") in HEALTH_PATHS:
            return health(environ, start_response)
        return inner(environ, start_response)

    app.wsgi_app = wsgi  # type: ignore[method-assign]
    return app

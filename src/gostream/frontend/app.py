"""The Flask app factory of the frontend: the terminal, the /api proxy, health and metrics."""

from __future__ import annotations

import http.client
import logging
import time
from pathlib import Path

from flask import Flask, Response, abort, g, request, send_from_directory

from gostream.common.health import mount_health
from gostream.common.settings import load
from gostream.frontend import metrics
from gostream.frontend.proxy import Upstream, private
from gostream.frontend.settings import FrontendSettings

log = logging.getLogger("gostream.frontend")

STATIC = Path(__file__).resolve().parent / "static"
VENDOR_JS = STATIC / "vendor" / "lightweight-charts.standalone.production.js"
TITLE = "Goosey LLC - QuestDB View"



def _route() -> str:
    """The metrics label of the current request: page, static, api or other."""
    rule = request.url_rule.rule if request.url_rule else ""
    if rule == "/":
        return "page"
    if rule.startswith("/static/"):
        return "static"
    if rule.startswith("/api/"):
        return "api"
    return "other"


def create_app(settings: FrontendSettings | None = None) -> Flask:
    settings = settings or load(FrontendSettings)
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    # No redirect of /api//x to /api/x (decoded: %2F counts as a slash): the target goes to
    # the api as it came.
    app.url_map.merge_slashes = False
    upstream = Upstream(settings.api_url, settings.api_timeout_s)

    @app.get("/")
    def index() -> Response:
        response = send_from_directory(STATIC, "index.html", max_age=0)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.route("/api/", defaults={"path": ""}, methods=["GET", "HEAD"])
    @app.route("/api/<path:path>", methods=["GET", "HEAD"])
    def api(path: str) -> Response:
        if private(path):  # the api's /metrics, /readyz, /healthz: the cluster's, not the public's
            abort(404)
        return upstream.forward()

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

    @app.before_request
    def start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def count(response: Response) -> Response:
        route = _route()
        metrics.REQUESTS.labels(route, str(response.status_code)).inc()
        if hasattr(g, "started"):
            metrics.LATENCY.labels(route).observe(time.perf_counter() - g.started)
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

    mount_health(app, problems)
    return app

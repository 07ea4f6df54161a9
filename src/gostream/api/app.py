"""The Flask app factory: routes, validation, errors as JSON, health and metrics."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Hashable
from functools import partial
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.datastructures import ImmutableMultiDict, MultiDict
from werkzeug.exceptions import HTTPException

from gostream.api import completeness as completeness_, market, metrics, validation
from gostream.api.cache import ResponseCache
from gostream.api.db import Database, Unavailable, make_engine
from gostream.api.openapi import document
from gostream.api.settings import ApiSettings
from gostream.api.stream import (CATCH_UP, RESUME_MAX, US, Hub, Ticket, encode_event, hello, parse_event_id, sse,
                                 waiting_sse, with_id)
from gostream.common.forwarded import trust_forwarded
from gostream.common.health import mount_health
from gostream.common.settings import load

log = logging.getLogger("gostream.api")

bp = Blueprint("api", __name__)


class Services:
    """What the routes share in one process."""

    def __init__(self, settings: ApiSettings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.hub = Hub(db, settings.stream_poll_ms, settings.stream_keepalive_s, settings.stream_max)
        self.candles_cache: ResponseCache | None = None
        self.candles_cache_control = "no-store"
        if settings.candles_cache_ms > 0:
            self.candles_cache = ResponseCache(settings.candles_cache_ms / 1000, settings.candles_cache_entries,
                                               settings.candles_cache_mb * 1024 * 1024)
            # What a browser or proxy may add on top of our own bound, in whole seconds.
            self.candles_cache_control = f"public, max-age={settings.candles_cache_ms // 1000}"


def _svc() -> Services:
    return current_app.extensions["gostream"]


def _json(data: object, status: int = 200, **headers: str) -> Response:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    response = Response(body, status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(headers)
    return response


def error(status: int, message: str, **headers: str) -> Response:
    return _json({"error": message}, status, **headers)


# -- routes ------------------------------------------------------------------
def _candles_query(svc: Services, args: MultiDict) -> tuple[Hashable, Callable[[], bytes], bool]:
    """The cache key of a /candles request, how to make its body, and whether the body may
    be kept (BadRequest if the parameters are not right). Without `to` a request asks for
    the latest candles, the forming one included: those are only shared by concurrent
    requests, never kept, so loading the terminal always shows what QuestDB has now."""
    validation.only(args, ("symbol", "interval", "from", "to", "limit"))
    symbol = validation.symbol(args, svc.settings.default_symbol)
    interval = validation.interval(args)
    start, end = validation.time_range(args)
    limit = validation.integer(args, "limit", validation.DEFAULT_CANDLES, 1, validation.MAX_CANDLES)
    # Bounds anywhere inside a bucket select that whole bucket: one key per answer.
    step = interval.seconds
    key = (symbol, interval.name, None if start is None else start // step * step,
           None if end is None else end // step * step, limit)
    return key, partial(market.candles_json, svc.db, symbol, interval, start, end, limit), end is not None


def _candles_headers(svc: Services, body: bytes, age_s: float, how: str, kept: bool) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Cache-Control", svc.candles_cache_control if kept else "no-store"), ("Age", str(int(age_s))),
            ("X-Cache", how)]


@bp.get("/candles")
def candles() -> Response:
    svc = _svc()
    key, load, keep = _candles_query(svc, request.args)
    if svc.candles_cache is None:
        response = Response(load(), mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response
    body, age_s, how = svc.candles_cache.get(key, load, keep)
    return Response(body, headers=_candles_headers(svc, body, age_s, how, keep))


def serve_cached_candles(app: Flask, svc: Services) -> None:
    """Answer a GET /candles whose body the cache holds before Flask's request machinery
    (routing, contexts, hooks: ~150 µs, most of what a cached answer costs in Python).
    Anything else (a miss, bad parameters, HEAD) goes on to the Flask route, which gives
    the same answers the same way. Counted in the request metrics like any /candles."""
    cache = svc.candles_cache
    if cache is None:
        return
    inner = app.wsgi_app
    answered = metrics.REQUESTS.labels("/candles", "200")
    latency = metrics.LATENCY.labels("/candles")

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") != "/candles" or environ.get("REQUEST_METHOD") != "GET":
            return inner(environ, start_response)
        started = time.perf_counter()
        try:
            # The query string parsed exactly as werkzeug's Request.args does.
            args = ImmutableMultiDict(parse_qsl(environ.get("QUERY_STRING", "").encode("latin1").decode(),
                                                keep_blank_values=True, errors="werkzeug.url_quote"))
            key, load, keep = _candles_query(svc, args)
        except Exception:  # bad parameters: the route answers them
            return inner(environ, start_response)
        found = cache.lookup(key, load) if keep else None
        if found is None:
            return inner(environ, start_response)
        body, age_s, how = found
        start_response("200 OK", _candles_headers(svc, body, age_s, how, keep))
        answered.inc()
        latency.observe(time.perf_counter() - started)
        return [body]

    app.wsgi_app = wsgi


@bp.get("/symbols")
def symbols() -> Response:
    validation.only(request.args, ())
    return _json(market.symbols(_svc().db))


@bp.get("/trades")
def trades() -> Response:
    args = request.args
    validation.only(args, ("symbol", "limit"))
    svc = _svc()
    symbol = validation.symbol(args, svc.settings.default_symbol)
    limit = validation.integer(args, "limit", validation.DEFAULT_TRADES, 1, validation.MAX_TRADES)
    return _json(market.recent_trades(svc.db, symbol, limit))


@bp.get("/stats")
def stats() -> Response:
    validation.only(request.args, ("symbol",))
    svc = _svc()
    return _json(market.stats(svc.db, validation.symbol(request.args, svc.settings.default_symbol)))


@bp.get("/completeness")
def completeness() -> Response:
    args = request.args
    validation.only(args, ("symbol", "from", "to"))
    svc = _svc()
    symbol = validation.symbol(args, svc.settings.default_symbol)
    start, end = validation.time_range(args)
    return _json(completeness_.completeness(svc.db, symbol, start, end))


@bp.get("/stream")
def stream() -> Response:
    args = request.args
    validation.only(args, ("symbol", "interval", "since", "trades_since", "last_event_id"))
    svc = _svc()
    symbol = validation.symbol(args, svc.settings.default_symbol)
    interval = validation.interval(args)
    since = validation.integer(args, "since", None, 0, validation.MAX_EPOCH_S, " (epoch seconds)")
    trades_since = validation.integer(args, "trades_since", None, 0, validation.MAX_EPOCH_S * 1000, " (epoch ms)")
    # The browser sends Last-Event-ID on its own reconnects; a page re-opening the stream
    # itself passes the same as a parameter.
    resume_text = request.headers.get("Last-Event-ID") or validation.text(args, "last_event_id")
    resume = None
    if resume_text:
        resume = parse_event_id(resume_text)
        if resume is None:
            raise validation.BadRequest(f"last_event_id: {resume_text[:40]!r} is not an event id of this api")
    hub = svc.hub
    if not hub.admit():
        metrics.STREAMS_REFUSED.inc()
        # Spread the retries: a pod that was full should not be hit by all of them at once.
        return error(503, "this api worker holds as many streams as it may (STREAM_MAX); retry later",
                     **{"Retry-After": str(random.randint(2, 10))})
    ticket = Ticket(hub)
    try:
        # Subscribe first, then read what the client starts with up to the position the
        # feed takes over from: nothing is missed or sent twice in between. This also
        # answers 503 up front when QuestDB is down.
        ticket.sub = hub.subscribe(symbol, interval)
        if ticket.sub is None:
            ready = hub.wait_for_trades(symbol)
            if ready is None:
                ticket.release()
                return error(503, "too many symbols without trades are being watched; retry later",
                             **{"Retry-After": "10"})
            body = waiting_sse(ticket, hello(symbol, interval, hub), ready)
        else:
            body = sse(ticket, _stream_head(svc, ticket.sub, since, trades_since, resume))
    except BaseException:
        ticket.release()
        raise
    response = Response(body, mimetype="text/event-stream")
    response.call_on_close(ticket.release)  # also when the stream never started
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # tell proxies not to buffer
    return response


def _stream_head(svc: Services, sub, since: int | None, trades_since: int | None, resume) -> bytes:
    """hello, the candles and trades a stream starts with, and the position it starts from.
    Resuming (Last-Event-ID): the trades after that position and every bucket from the one
    holding it on, or `reload` when that is more than a stream is sent (the client loads
    /candles again). Else: the forming candle, or with `since` (the client's newest bar)
    every bucket from that one on, so a bar that closed after the client's /candles gets its
    final values; with `trades_since` (its newest trade), the trades from that time on."""
    db, symbol, interval, start = svc.db, sub.feed.symbol, sub.interval, sub.start
    parts = [hello(symbol, interval, svc.hub)]
    rows: list[tuple] = []
    candles_from, limit = since, 1 if since is None else CATCH_UP
    if resume is not None:
        resume = min(resume, start)
        behind = start[0] // US // interval.seconds - resume[0] // US // interval.seconds
        rows = market.trades_between(db, symbol, resume, start, RESUME_MAX + 1)
        if behind >= CATCH_UP or len(rows) > RESUME_MAX:
            parts.append(encode_event("reload", {"reason": "too far behind to resume"}))
            return b"".join(parts[:-1]) + with_id(parts[-1], start)
        candles_from, limit = resume[0] // US, CATCH_UP
    elif trades_since is not None:
        rows = market.trades_between(db, symbol, (trades_since * 1000, -1), start, validation.MAX_TRADES)
    step = interval.seconds
    key = ("candles", interval.name, None if candles_from is None else candles_from // step * step, limit)
    parts.append(sub.feed.shared(key, lambda: b"".join(
        encode_event("candle", candle)
        for candle in json.loads(market.candles_json(db, symbol, interval, candles_from, None, limit)))))
    if rows:
        parts.append(encode_event("trades", [market._trade(row) for row in rows]))
    parts = [part for part in parts if part]
    return b"".join(parts[:-1]) + with_id(parts[-1], start)  # the position the feed takes over from


@bp.get("/openapi.json")
def openapi() -> Response:
    return _json(document())


@bp.get("/")
def index() -> Response:
    return _json({"service": "gostream-api", "openapi": "/openapi.json",
                  "endpoints": ["/candles", "/symbols", "/trades", "/stats", "/completeness", "/stream", "/healthz", "/readyz", "/metrics"]})


# -- errors: always JSON, never a stack trace --------------------------------
def _bad_request(exc: validation.BadRequest) -> Response:
    return error(400, str(exc))


def _unavailable(exc: Unavailable) -> Response:
    return error(503, str(exc), **{"Retry-After": "2"})


def _http(exc: HTTPException) -> Response:
    if exc.code == 404:
        return error(404, f"no such path {request.path} (see /openapi.json)")
    return error(exc.code or 400, exc.description or exc.name)


def _unexpected(exc: Exception) -> Response:
    ref = uuid.uuid4().hex[:12]
    log.error("unexpected error", exc_info=exc, extra={"ref": ref, "path": request.path})
    return error(503, f"the api could not answer this request (ref {ref})", **{"Retry-After": "2"})


# -- metrics per request -----------------------------------------------------
def _started() -> None:
    g.started = time.perf_counter()


def _finished(response: Response) -> Response:
    endpoint = request.url_rule.rule if request.url_rule else "other"
    metrics.REQUESTS.labels(endpoint, str(response.status_code)).inc()
    if hasattr(g, "started"):  # for /stream: until the event stream starts
        metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - g.started)
    return response


def create_app(settings: ApiSettings | None = None) -> Flask:
    settings = settings or load(ApiSettings)
    app = Flask(__name__)
    app.json.sort_keys = False
    services = Services(settings, Database(make_engine(settings)))
    app.extensions["gostream"] = services
    app.register_blueprint(bp)
    app.register_error_handler(validation.BadRequest, _bad_request)
    app.register_error_handler(Unavailable, _unavailable)
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(Exception, _unexpected)
    app.before_request(_started)
    app.after_request(_finished)

    serve_cached_candles(app, services)
    mount_health(app, services.db.ping)
    app.wsgi_app = trust_forwarded(app.wsgi_app, settings.trusted_proxy_hops, settings.trusted_proxies)
    return app

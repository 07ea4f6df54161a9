"""The app factory: routes, errors as JSON, health and metrics.

The api is an APIFlask app: each route declares its query model (gostream.api.validation)
and APIFlask validates the request against it and generates /openapi.json from the same
models, so what is checked and what is documented cannot drift apart. The raw /candles
fast path validates with the same model."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Hashable
from functools import partial
from urllib.parse import parse_qsl

from apiflask import APIBlueprint, APIFlask, HTTPError
from flask import Flask, Response, current_app, g, request
from pydantic import BaseModel, ValidationError
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import HTTPException

from gostream.api import completeness as completeness_, market, metrics, udf, validation
from gostream.api.cache import ResponseCache
from gostream.api.completeness import MAX_HOLES
from gostream.api.db import Database, Unavailable, make_engine
from gostream.api.queries import INTERVALS
from gostream.api.settings import ApiSettings
from gostream.api.stream import (CATCH_UP, RESUME_MAX, US, Hub, Ticket, encode_event, hello, parse_event_id, sse,
                                 waiting_sse, with_id)
from gostream.api.validation import (MAX_TRADES, Candle, CandlesQuery, Completeness, CompletenessQuery, Error, Index,
                                     NoQuery, Stats, StatsQuery, StreamQuery, SymbolRow, Trade, TradesQuery)
from gostream.common.forwarded import trust_forwarded
from gostream.common.health import mount_health
from gostream.common.settings import load

log = logging.getLogger("gostream.api")

bp = APIBlueprint("api", __name__)

DESCRIPTION = ("OHLCV candles, trades and 24h statistics of OKX instruments, read from QuestDB, and TradingView's "
               "UDF datafeed under /udf. Times of candles are epoch seconds (bucket start, UTC); times of trades are "
               "epoch milliseconds. Every parameter is checked: a wrong, unknown or repeated one gets 400 with "
               "`{\"error\": \"...\"}` naming it (under /udf: `{\"s\": \"error\", \"errmsg\": \"...\"}`).")

# What every data route may answer besides 200 (the schema: validation.Error, see create_app).
ERRORS = {400: "A parameter is invalid, unknown or repeated; `error` says which and why",
          503: "QuestDB cannot answer right now; retry later (`Retry-After`)"}


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
    """An error answer: `{"error": ...}`, or UDF's own shape under /udf."""
    body = udf.error_body(message) if udf.owns(request.path) else {"error": message}
    return _json(body, status, **headers)


# -- routes ------------------------------------------------------------------
def _candles_plan(svc: Services, query: CandlesQuery) -> tuple[Hashable, Callable[[], bytes], bool]:
    """The cache key of a /candles request, how to make its body, and whether the body may
    be kept. Without `to` a request asks for the latest candles, the forming one included:
    those are only shared by concurrent requests, never kept, so loading the terminal
    always shows what QuestDB has now."""
    symbol = query.symbol or svc.settings.default_symbol
    interval = INTERVALS[query.interval]
    start, end, limit = query.start, query.end, query.limit
    # Bounds anywhere inside a bucket select that whole bucket: one key per answer.
    step = interval.seconds
    key = (symbol, interval.name, None if start is None else start // step * step,
           None if end is None else end // step * step, limit)
    return key, partial(market.candles_json, svc.db, symbol, interval, start, end, limit), end is not None


def _candles_headers(svc: Services, body: bytes, age_s: float, how: str, kept: bool) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Cache-Control", svc.candles_cache_control if kept else "no-store"), ("Age", str(int(age_s))),
            ("X-Cache", how)]


_CACHE_HEADERS = {
    "Cache-Control": {
        "description": "`public, max-age=N` (N: the api's staleness bound CANDLES_CACHE_MS in whole seconds) "
        "for a request with `to`; `no-store` without `to` or with the cache off.",
        "schema": {"type": "string"},
    },
    "Age": {"description": "Whole seconds since the query behind this body was sent (cache on).",
            "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "X-Cache": {"description": "Where the body came from (cache on).",
                "schema": {"type": "string", "enum": ["hit", "miss", "shared"]}},
}


@bp.get("/candles")
@bp.input(CandlesQuery, location="query", arg_name="query")
@bp.output(list[Candle], description="Candles, ascending by time")
@bp.doc(operation_id="getCandles", responses={200: {"description": "Candles, ascending by time",
                                                    "headers": _CACHE_HEADERS}, **ERRORS})
def candles(query: CandlesQuery) -> Response:
    """OHLCV candles, ascending by time

    Candles of the buckets from the one holding `from` to the one holding `to`, at most the `limit`
    latest. Without `to`: up to the symbol's latest trade. Without `from`: the `limit` buckets ending at
    `to`. Buckets without trades have no candle. With no parameters: recent BTC-USDT 1m candles.

    With `to`, answers are cached per parameter set (bounds are rounded down to their bucket) with bounded
    staleness: a body is never served more than `CANDLES_CACHE_MS` (default 1000 ms) after the query that
    made it was sent, because closed candles can still change (trades missed during a reconnect are
    backfilled into past minutes); `Cache-Control: public, max-age=<that bound in whole seconds>` and `Age`
    let HTTP caches keep to the same bound. Without `to` (the latest candles, the forming one computed from
    the trades themselves) requests arriving together share one query, but nothing is kept
    (`Cache-Control: no-store`). `X-Cache` says whether the body was cached (`hit`), queried for this
    request (`miss`) or shared with a concurrent request's query (`shared`). For live updates use
    `/stream`. With `CANDLES_CACHE_MS=0` every request queries QuestDB, `Cache-Control: no-store`, no
    `X-Cache`.
    """
    svc = _svc()
    key, load, keep = _candles_plan(svc, query)
    if svc.candles_cache is None:
        response = Response(load(), mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response
    body, age_s, how = svc.candles_cache.get(key, load, keep)
    return Response(body, headers=_candles_headers(svc, body, age_s, how, keep))


def serve_cached_candles(app: Flask, svc: Services) -> None:
    """Answer a GET /candles whose body the cache holds before Flask's request machinery
    (routing, contexts, hooks: ~150 µs, most of what a cached answer costs in Python).
    The query is checked with the route's own model; anything else (a miss, bad
    parameters, HEAD) goes on to the route, which gives the same answers the same way.
    Counted in the request metrics like any /candles."""
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
            key, load, keep = _candles_plan(svc, validation.parse(CandlesQuery, args))
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
@bp.input(NoQuery, location="query", arg_name="query")
@bp.output(list[SymbolRow], description="Symbols")
@bp.doc(operation_id="getSymbols", responses=ERRORS)
def symbols(query: NoQuery) -> Response:
    """Every symbol with trades, with its latest 1m close"""
    return _json(market.symbols(_svc().db))


@bp.get("/trades")
@bp.input(TradesQuery, location="query", arg_name="query")
@bp.output(list[Trade], description="Trades, newest first")
@bp.doc(operation_id="getTrades", responses=ERRORS)
def trades(query: TradesQuery) -> Response:
    """Recent trades, newest first (a tape)"""
    svc = _svc()
    return _json(market.recent_trades(svc.db, query.symbol or svc.settings.default_symbol, query.limit))


@bp.get("/stats")
@bp.input(StatsQuery, location="query", arg_name="query")
@bp.output(Stats, description="Statistics")
@bp.doc(operation_id="getStats", responses=ERRORS)
def stats(query: StatsQuery) -> Response:
    """Last price and the rolling 24 hours up to the latest trade"""
    svc = _svc()
    return _json(market.stats(svc.db, query.symbol or svc.settings.default_symbol))


@bp.get("/completeness")
@bp.input(CompletenessQuery, location="query", arg_name="query")
@bp.output(Completeness, description="Completeness")
@bp.doc(operation_id="getCompleteness", responses=ERRORS, description=(
    "OKX trade ids are consecutive per instrument; a stored row covers the ids `trade_id - fills + 1 .. trade_id`. "
    "Over the trades whose exchange time is in [`from`, `to`) (without them: the symbol's whole history), `expected` "
    "counts the ids from the lowest covered (`first_id`) to the highest (`last_id`), `missing` those no stored row "
    "covers, in holes between two stored rows (a hole at the edge of the range belongs to the neighbouring range). "
    "`percent` is stored/expected with two decimals, rounded down (100 only when complete). "
    f"`holes` lists the first {MAX_HOLES} by id (`holes_truncated` when there are more), each with the times of the "
    "stored rows around it and the state the producer's hole ledger gives it (`open`: being fetched, `closed`, "
    "`unrecoverable`: OKX no longer serves the ids; `found`: no ledger row covers it yet). `ledger` counts the "
    "ledger rows of the symbol overlapping `first_id .. last_id` by state. A range without trades: zeros, complete."))
def completeness(query: CompletenessQuery) -> Response:
    """How many of a symbol's trade ids are stored over a time range, and the holes"""
    svc = _svc()
    symbol = query.symbol or svc.settings.default_symbol
    return _json(completeness_.completeness(svc.db, symbol, query.start, query.end))


@bp.get("/stream")
@bp.input(StreamQuery, location="query", arg_name="query")
@bp.output(validation.StreamEvent, content_type="text/event-stream",
           description="An event stream (the schema: one event)")
@bp.doc(operation_id="streamLive", responses=ERRORS, description=(
    "Events: `hello` {symbol, interval, poll_ms}; `candle` (a Candle: the forming bucket, or a closed one's final "
    "values, replace the bar with the same time); `trades` (an array of Trade, oldest first); `status` {ok, error?} "
    "when QuestDB goes away or comes back. Comment lines keep the connection alive.\n\n"
    "After `hello` come the candles to start from: the forming one, or with `since` every bucket from the one "
    f"holding `since` on (at most the {CATCH_UP} latest). A client passes the time of the newest bar it loaded from "
    "`/candles`, so a bucket that closed in between gets its final values. With `trades_since` (the time of the "
    f"newest trade it has), a `trades` event with the trades from that millisecond on follows (at most {MAX_TRADES}, "
    "oldest first; the client drops the ids it has).\n\n"
    "Each live batch is the `candle` events of the buckets it touched, then its `trades` event with an `id:` "
    "(`<µs>-<trade id>`: the stream's position in (time, trade id) order; the events a stream starts with end with "
    "the position it starts from). With `Last-Event-ID` (or `last_event_id`) a stream resumes exactly: the trades "
    "after that position and the buckets from its one on, or `reload` {reason} when that is too far behind (load "
    "`/candles` again). `late` (an array of Trade): trades written below the position (a filled hole), followed by "
    "their buckets' candles. A symbol without trades: keep-alives, then `reload` once it has some. 503 with "
    "`Retry-After` when the api holds `STREAM_MAX` streams."))
def stream(query: StreamQuery) -> Response:
    """Server-Sent Events: the forming candle and new trades as they land"""
    svc = _svc()
    symbol = query.symbol or svc.settings.default_symbol
    interval = INTERVALS[query.interval]
    # The browser sends Last-Event-ID on its own reconnects; a page re-opening the stream
    # itself passes the same as a parameter.
    resume_text = request.headers.get("Last-Event-ID") or query.last_event_id
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
            body = sse(ticket, _stream_head(svc, ticket.sub, query.since, query.trades_since, resume))
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
        rows = market.trades_between(db, symbol, (trades_since * 1000, -1), start, MAX_TRADES)
    step = interval.seconds
    key = ("candles", interval.name, None if candles_from is None else candles_from // step * step, limit)
    parts.append(sub.feed.shared(key, lambda: b"".join(
        encode_event("candle", candle)
        for candle in json.loads(market.candles_json(db, symbol, interval, candles_from, None, limit)))))
    if rows:
        parts.append(encode_event("trades", [market._trade(row) for row in rows]))
    parts = [part for part in parts if part]
    return b"".join(parts[:-1]) + with_id(parts[-1], start)  # the position the feed takes over from


@bp.get("/")
@bp.input(NoQuery, location="query", arg_name="query")
@bp.output(Index, description="Where things are")
@bp.doc(operation_id="getIndex", responses={400: ERRORS[400]})
def index(query: NoQuery) -> Response:
    """The api's name and endpoints"""
    return _json({"service": "gostream-api", "openapi": "/openapi.json",
                  "endpoints": ["/candles", "/symbols", "/trades", "/stats", "/completeness", "/stream",
                                *udf.PATHS, "/healthz", "/readyz", "/metrics"]})


# -- errors: always JSON, never a stack trace --------------------------------
def _rejected(exc: HTTPError) -> Response:
    """APIFlask's validation error (the model's ValidationError is its cause) and its aborts."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        return error(400, validation.problem(cause, validation.MODELS.get(cause.title)))
    return error(exc.status_code, exc.message or "error", **dict(exc.headers or {}))


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
    validation.query_dict(request.args)  # a repeated parameter is an error on every route


def _finished(response: Response) -> Response:
    endpoint = request.url_rule.rule if request.url_rule else "other"
    metrics.REQUESTS.labels(endpoint, str(response.status_code)).inc()
    if hasattr(g, "started"):  # for /stream: until the event stream starts
        metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - g.started)
    return response


# gunicorn answers a request line longer than its limit (4,094 bytes) itself, before the api.
TOO_LONG = {"description": "The request line is longer than gunicorn's limit_request_line (4,094 bytes); "
            "an HTML page from gunicorn", "content": {"text/html": {"schema": {"type": "string"}}}}


def _document_the_rest(spec: dict) -> dict:
    """What APIFlask does not see: /healthz, /readyz and /metrics, served by
    gostream.common.health (a WSGI app mounted beside Flask's routes, shared by every
    service), /openapi.json (APIFlask's own), and gunicorn's 414 on every path."""
    def answer(description: str, model: type[BaseModel]) -> dict:
        return {"description": description, "content": {"application/json": {"schema": model.model_json_schema()}}}

    spec["paths"].update({
        "/healthz": {"get": {"operationId": "getHealth", "summary": "Liveness",
                             "responses": {"200": answer("Alive", validation.Alive)}}},
        "/readyz": {"get": {"operationId": "getReady", "summary": "Readiness: QuestDB answers and the candle view exists",
                            "responses": {"200": answer("Ready", validation.Ready),
                                          "503": answer("Not ready", validation.Ready)}}},
        "/metrics": {"get": {"operationId": "getMetrics", "summary": "Prometheus metrics", "responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"operationId": "getOpenApi", "summary": "This document", "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    })
    for operations in spec["paths"].values():
        for operation in operations.values():
            operation["responses"]["414"] = TOO_LONG
    return spec


def create_app(settings: ApiSettings | None = None) -> Flask:
    settings = settings or load(ApiSettings)
    app = APIFlask(__name__, title="Go-Stream candle API", version="1.0.0", spec_path="/openapi.json", docs_path=None,
                   json_errors=False)
    error_schema = Error.model_json_schema()
    app.config.update(
        DESCRIPTION=DESCRIPTION, LICENSE={"name": "Apache-2.0", "identifier": "Apache-2.0"},
        VALIDATION_ERROR_STATUS_CODE=400, VALIDATION_ERROR_DESCRIPTION=ERRORS[400],
        VALIDATION_ERROR_SCHEMA=error_schema, HTTP_ERROR_SCHEMA=error_schema,
        AUTO_SERVERS=False, AUTO_TAGS=False, AUTO_404_RESPONSE=False, SPEC_FORMAT="json",
    )
    app.json.sort_keys = False
    services = Services(settings, Database(make_engine(settings)))
    app.extensions["gostream"] = services
    app.register_blueprint(bp)
    app.register_blueprint(udf.bp, url_prefix="/udf")
    app.spec_processor(_document_the_rest)
    app.error_processor(_rejected)
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

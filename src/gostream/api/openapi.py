"""The OpenAPI 3.1 document of the api, served at /openapi.json."""

from __future__ import annotations

from functools import cache

from gostream.api.completeness import MAX_HOLES
from gostream.api.queries import INTERVALS
from gostream.api.stream import CATCH_UP
from gostream.api.validation import DEFAULT_CANDLES, DEFAULT_TRADES, MAX_CANDLES, MAX_EPOCH_S, MAX_TRADES
from gostream.common.trade import SYMBOL_PATTERN


def _param(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _symbol() -> dict:
    return _param("symbol", "OKX instrument id.",
                  {"type": "string", "pattern": SYMBOL_PATTERN.pattern, "default": "BTC-USDT", "examples": ["BTC-USDT"]})


def _interval() -> dict:
    return _param("interval", "Candle length; buckets are aligned to the UTC calendar.",
                  {"type": "string", "enum": list(INTERVALS), "default": "1m"})


def _json_response(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_CACHE_HEADERS = {
    "Cache-Control": {
        "description": "`public, max-age=N` (N: the api's staleness bound CANDLES_CACHE_MS in whole seconds) "
        "for a request with `to`; `no-store` without `to` or with the cache off.",
        "schema": {"type": "string"},
    },
    "Age": {"description": "Whole seconds since the query behind this body was sent (cache on).",
            "schema": {"type": "integer", "minimum": 0}},
    "X-Cache": {"description": "Where the body came from (cache on).",
                "schema": {"type": "string", "enum": ["hit", "miss", "shared"]}},
}

_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "503": {"$ref": "#/components/responses/Unavailable"},
}


@cache
def document() -> dict:
    epoch = {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_S}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Go-Stream candle API",
            "version": "1.0.0",
            "description": "OHLCV candles, trades and 24h statistics of OKX instruments, read from QuestDB. "
            "Times of candles are epoch seconds (bucket start, UTC); times of trades are epoch milliseconds.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": {
            "/candles": {
                "get": {
                    "operationId": "getCandles",
                    "summary": "OHLCV candles, ascending by time",
                    "description": "Candles of the buckets from the one holding `from` to the one holding `to`, "
                    "at most the `limit` latest. Without `to`: up to the symbol's latest trade. Without `from`: the "
                    "`limit` buckets ending at `to`. Buckets without trades have no candle. With no parameters: "
                    "recent BTC-USDT 1m candles.\n\n"
                    "With `to`, answers are cached per parameter set (bounds are rounded down to their bucket) with "
                    "bounded staleness: a body is never served more than `CANDLES_CACHE_MS` (default 1000 ms) after "
                    "the query that made it was sent, because closed candles can still change (trades missed during "
                    "a reconnect are backfilled into past minutes); `Cache-Control: public, max-age=<that bound in whole "
                    "seconds>` and `Age` let HTTP caches keep to the same bound. Without `to` (the latest candles, the "
                    "forming one computed from the trades themselves) requests arriving together share one query, "
                    "but nothing is kept (`Cache-Control: no-store`). `X-Cache` says whether the body was cached "
                    "(`hit`), queried for this request (`miss`) or shared with a concurrent request's query "
                    "(`shared`). For live updates use `/stream`. With `CANDLES_CACHE_MS=0` every request queries "
                    "QuestDB, `Cache-Control: no-store`, no `X-Cache`.",
                    "parameters": [
                        _symbol(),
                        _interval(),
                        _param("from", "Start, epoch seconds (inclusive, whole bucket).", epoch),
                        _param("to", "End, epoch seconds (inclusive, whole bucket); not before `from`.", epoch),
                        _param("limit", "Most candles to return (the latest ones).",
                               {"type": "integer", "minimum": 1, "maximum": MAX_CANDLES, "default": DEFAULT_CANDLES}),
                    ],
                    "responses": {
                        "200": {
                            **_json_response("Candles", {"type": "array", "items": {"$ref": "#/components/schemas/Candle"}}),
                            "headers": _CACHE_HEADERS,
                        },
                        **_ERRORS,
                    },
                }
            },
            "/symbols": {
                "get": {
                    "operationId": "getSymbols",
                    "summary": "Every symbol with trades, with its latest 1m close",
                    "responses": {
                        "200": _json_response("Symbols", {"type": "array", "items": {"$ref": "#/components/schemas/Symbol"}}),
                        **_ERRORS,
                    },
                }
            },
            "/trades": {
                "get": {
                    "operationId": "getTrades",
                    "summary": "Recent trades, newest first (a tape)",
                    "parameters": [
                        _symbol(),
                        _param("limit", "Most trades to return.",
                               {"type": "integer", "minimum": 1, "maximum": MAX_TRADES, "default": DEFAULT_TRADES}),
                    ],
                    "responses": {
                        "200": _json_response("Trades", {"type": "array", "items": {"$ref": "#/components/schemas/Trade"}}),
                        **_ERRORS,
                    },
                }
            },
            "/stats": {
                "get": {
                    "operationId": "getStats",
                    "summary": "Last price and the rolling 24 hours up to the latest trade",
                    "parameters": [_symbol()],
                    "responses": {"200": _json_response("Statistics", {"$ref": "#/components/schemas/Stats"}), **_ERRORS},
                }
            },
            "/completeness": {
                "get": {
                    "operationId": "getCompleteness",
                    "summary": "How many of a symbol's trade ids are stored over a time range, and the holes",
                    "description": "OKX trade ids are consecutive per instrument; a stored row covers the ids "
                    "`trade_id - fills + 1 .. trade_id`. Over the trades whose exchange time is in [`from`, `to`) "
                    "(without them: the symbol's whole history), `expected` counts the ids from the lowest covered "
                    "(`first_id`) to the highest (`last_id`), `missing` those no stored row covers, in holes between "
                    "two stored rows (a hole at the edge of the range belongs to the neighbouring range). `percent` "
                    "is stored/expected with two decimals, rounded down (100 only when complete). "
                    f"`holes` lists the first {MAX_HOLES} by id (`holes_truncated` when there are more), each with the "
                    "times of the stored rows around it and the state the producer's hole ledger gives it "
                    "(`open`: being fetched, `closed`, `unrecoverable`: OKX no longer serves the ids; `found`: "
                    "no ledger row covers it yet). `ledger` counts the ledger rows of the symbol overlapping "
                    "`first_id .. last_id` by state. A range without trades: zeros, complete.",
                    "parameters": [
                        _symbol(),
                        _param("from", "Start, epoch seconds (inclusive).", epoch),
                        _param("to", "End, epoch seconds (exclusive); not before `from`.", epoch),
                    ],
                    "responses": {
                        "200": _json_response("Completeness", {"$ref": "#/components/schemas/Completeness"}),
                        **_ERRORS,
                    },
                }
            },
            "/stream": {
                "get": {
                    "operationId": "streamLive",
                    "summary": "Server-Sent Events: the forming candle and new trades as they land",
                    "description": "Events: `hello` {symbol, interval, poll_ms}; `candle` (a Candle: the forming "
                    "bucket, or a closed one's final values, replace the bar with the same time); `trades` "
                    "(an array of Trade, oldest first); `status` {ok, error?} when QuestDB goes away or comes back. "
                    "Comment lines keep the connection alive.\n\n"
                    "After `hello` come the candles to start from: the forming one, or with `since` every bucket "
                    f"from the one holding `since` on (at most the {CATCH_UP} latest). A client passes the time of "
                    "the newest bar it loaded from `/candles`, so a bucket that closed in between gets its final "
                    f"values. With `trades_since` (the time of the newest trade it has), a `trades` event with the "
                    f"trades from that millisecond on follows (at most {MAX_TRADES}, oldest first; the client drops "
                    "the ids it has).\n\n"
                    "Each live batch is the `candle` events of the buckets it touched, then its `trades` event "
                    "with an `id:` (`<µs>-<trade id>`: the stream's position in (time, trade id) order; the "
                    "events a stream starts with end with the position it starts from). With `Last-Event-ID` "
                    "(or `last_event_id`) a stream resumes exactly: the trades after that position and the "
                    "buckets from its one on, or `reload` {reason} when that is too far behind (load `/candles` "
                    "again). `late` (an array of Trade): trades written below the position (a filled hole), "
                    "followed by their buckets' candles. A symbol without trades: keep-alives, then `reload` "
                    "once it has some. 503 with `Retry-After` when the api holds `STREAM_MAX` streams.",
                    "parameters": [
                        _symbol(),
                        _interval(),
                        _param("since", "Epoch seconds: the client's newest bar (whole bucket).", epoch),
                        _param("trades_since", "Epoch milliseconds: the client's newest trade.",
                               {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_S * 1000}),
                        _param("last_event_id", "The last event id the client got (`<µs>-<trade id>`), as the "
                               "`Last-Event-ID` header a browser sends on its own reconnects: resume from there.",
                               {"type": "string", "pattern": "^[0-9]{1,19}-(-1|[0-9]{1,19})$"}),
                    ],
                    "responses": {
                        "200": {"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                        **_ERRORS,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "responses": {"200": _json_response("OpenAPI 3.1 document", {"type": "object"})},
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "getHealth",
                    "summary": "Liveness",
                    "responses": {"200": _json_response("Alive", {"type": "object", "properties": {"alive": {"type": "boolean"}}})},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "getReady",
                    "summary": "Readiness: QuestDB answers and the candle view exists",
                    "responses": {
                        "200": _json_response("Ready", {"type": "object", "properties": {"ready": {"type": "boolean"}}}),
                        "503": _json_response("Not ready", {
                            "type": "object",
                            "properties": {"ready": {"type": "boolean"}, "problems": {"type": "array", "items": {"type": "string"}}},
                        }),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "getMetrics",
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}},
                }
            },
        },
        "components": {
            "schemas": {
                "Candle": {
                    "type": "object",
                    "required": ["time", "open", "high", "low", "close", "volume"],
                    "properties": {
                        "time": {"type": "integer", "description": "Bucket start, epoch seconds (UTC)"},
                        "open": {"type": "number"},
                        "high": {"type": "number"},
                        "low": {"type": "number"},
                        "close": {"type": "number"},
                        "volume": {"type": "number", "description": "Sum of trade sizes (base currency)"},
                    },
                },
                "Trade": {
                    "type": "object",
                    "required": ["id", "time_ms", "price", "size", "side"],
                    "properties": {
                        "id": {"type": "integer", "description": "OKX trade id"},
                        "time_ms": {"type": "integer", "description": "Exchange time, epoch milliseconds"},
                        "price": {"type": "number"},
                        "size": {"type": "number"},
                        "side": {"type": "string", "enum": ["buy", "sell"], "description": "Taker side"},
                    },
                },
                "Symbol": {
                    "type": "object",
                    "required": ["symbol", "last", "time"],
                    "properties": {
                        "symbol": {"type": "string"},
                        "last": {"type": "number", "description": "Close of the latest 1m candle"},
                        "time": {"type": "integer", "description": "That candle's start, epoch seconds"},
                    },
                },
                "Stats": {
                    "type": "object",
                    "required": ["symbol", "time_ms", "last", "open", "high", "low", "volume", "trades", "change", "change_pct"],
                    "properties": {
                        "symbol": {"type": "string"},
                        "time_ms": {"type": ["integer", "null"], "description": "Latest trade, epoch milliseconds"},
                        "last": {"type": ["number", "null"]},
                        "open": {"type": ["number", "null"], "description": "First price of the 24 h window"},
                        "high": {"type": ["number", "null"]},
                        "low": {"type": ["number", "null"]},
                        "volume": {"type": ["number", "null"]},
                        "trades": {"type": "integer"},
                        "change": {"type": ["number", "null"]},
                        "change_pct": {"type": ["number", "null"]},
                    },
                },
                "Completeness": {
                    "type": "object",
                    "required": ["symbol", "from", "to", "first_id", "last_id", "expected", "stored", "missing",
                                 "complete", "percent", "holes", "holes_truncated", "ledger"],
                    "additionalProperties": False,
                    "properties": {
                        "symbol": {"type": "string"},
                        "from": {"type": ["integer", "null"], "description": "As asked, epoch seconds"},
                        "to": {"type": ["integer", "null"], "description": "As asked, epoch seconds"},
                        "first_id": {"type": "integer", "description": "Lowest id a stored row covers (0: no trades)"},
                        "last_id": {"type": "integer", "description": "Highest stored id (0: no trades)"},
                        "expected": {"type": "integer", "minimum": 0, "description": "last_id - first_id + 1"},
                        "stored": {"type": "integer", "minimum": 0, "description": "expected - missing"},
                        "missing": {"type": "integer", "minimum": 0, "description": "Ids in holes"},
                        "complete": {"type": "boolean", "description": "missing == 0"},
                        "percent": {"type": "number", "minimum": 0, "maximum": 100},
                        "holes": {"type": "array", "maxItems": MAX_HOLES, "items": {"$ref": "#/components/schemas/Hole"}},
                        "holes_truncated": {"type": "boolean"},
                        "ledger": {
                            "type": "object",
                            "required": ["open", "unrecoverable", "unrecoverable_missing"],
                            "additionalProperties": False,
                            "properties": {
                                "open": {"type": "integer", "minimum": 0},
                                "unrecoverable": {"type": "integer", "minimum": 0},
                                "unrecoverable_missing": {"type": "integer", "minimum": 0},
                            },
                        },
                    },
                },
                "Hole": {
                    "type": "object",
                    "required": ["first_id", "last_id", "missing", "after_time", "before_time", "state", "attempts"],
                    "additionalProperties": False,
                    "properties": {
                        "first_id": {"type": "integer"},
                        "last_id": {"type": "integer"},
                        "missing": {"type": "integer", "minimum": 1},
                        "after_time": {"type": "number", "description": "Time of the stored row before it, epoch seconds"},
                        "before_time": {"type": "number", "description": "Time of the stored row after it, epoch seconds"},
                        "state": {"type": "string", "enum": ["found", "open", "closed", "unrecoverable"]},
                        "attempts": {"type": "integer", "minimum": 0},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
            },
            "responses": {
                "BadRequest": _json_response("A parameter is invalid; `error` says which and why",
                                             {"$ref": "#/components/schemas/Error"}),
                "Unavailable": _json_response("QuestDB cannot answer right now; retry later",
                                              {"$ref": "#/components/schemas/Error"}),
            },
        },
    }

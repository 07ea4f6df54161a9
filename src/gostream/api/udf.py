"""TradingView's UDF datafeed protocol under /udf, so the Charting Library (its
UDFCompatibleDatafeed) and other UDF clients chart the store.

/udf/config, /udf/symbols, /udf/search, /udf/history and /udf/time. Bars come from the
code /candles answers with (market.candles_json), so a /udf/history answer holds the
same bars as /candles over the same range. UDF's ``to`` is exclusive, /candles' is
inclusive: /udf/history?from=F&to=T is /candles?from=F&to=T-1. Resolutions are UDF's
names for the api's intervals ("1S", "1", "60", "1D"...); only those the api has are
offered. Errors are UDF's shape, ``{"s": "error", "errmsg": ...}``, with an HTTP status
that says what kind (UDF clients read the body).
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Annotated, Any, Literal

from apiflask import APIBlueprint
from flask import Response, current_app
from pydantic import BaseModel, ConfigDict, Field, RootModel

from gostream.api import market
from gostream.api.db import Database
from gostream.api.queries import INTERVALS, Interval
from gostream.api.validation import MAX_CANDLES, EpochS, NoQuery, Query, Ranged, number, optional
from gostream.common.trade import SYMBOL_PATTERN

EXCHANGE = "OKX"
PATHS = ("/udf/config", "/udf/symbols", "/udf/search", "/udf/history", "/udf/time")
MAX_SEARCH = 100


def resolution_name(interval: Interval) -> str:
    """UDF's name of an interval: seconds "15S", minutes "15" (hours too: "60", "240"), days "1D"."""
    if interval.seconds < 60:
        return f"{interval.seconds}S"
    if interval.seconds < 86_400:
        return str(interval.seconds // 60)
    return f"{interval.seconds // 86_400}D"


RESOLUTIONS: dict[str, Interval] = {resolution_name(i): i for i in INTERVALS.values()}
ALIASES = {"D": "1D"}  # what UDF clients also send for a day
SECONDS = [r.removesuffix("S") for r, i in RESOLUTIONS.items() if i.seconds < 60]
MINUTES = [r for r, i in RESOLUTIONS.items() if 60 <= i.seconds < 86_400]
DAYS = [r.removesuffix("D") for r, i in RESOLUTIONS.items() if i.seconds >= 86_400]

# "OKX:BTC-USDT" (a full name, as the library may send it back) or "BTC-USDT".
_SYMBOL = f"^({EXCHANGE}:)?{SYMBOL_PATTERN.pattern.removeprefix('^')}"
UdfSymbol = Annotated[str, Field(pattern=_SYMBOL, examples=["BTC-USDT", "OKX:BTC-USDT"],
                                 description="Instrument id, optionally with its exchange (`OKX:BTC-USDT`).")]


def owns(path: str) -> bool:
    return path.startswith("/udf/")


def error_body(message: str) -> dict:
    return {"s": "error", "errmsg": message}


def _ticker(symbol: str) -> str:
    return symbol.removeprefix(f"{EXCHANGE}:")


# -- the contract ------------------------------------------------------------------
class SymbolQuery(Query):
    symbol: UdfSymbol


SearchLimit = number(1, MAX_SEARCH, "Most symbols to return.")
Countback = number(1, MAX_CANDLES, optional=True)


class SearchQuery(Query):
    query: Annotated[str, Field(max_length=64, description="Part of the instrument id, any case.")] = ""
    type: Literal["", "crypto"] = Field("", description="Symbol type (`crypto`; empty: all).")
    exchange: Literal["", EXCHANGE] = Field("", description="Exchange (empty: all).")
    limit: SearchLimit = 30


class HistoryQuery(Ranged):
    symbol: UdfSymbol
    resolution: Literal[tuple([*RESOLUTIONS, *ALIASES])] = Field(  # type: ignore[valid-type]
        description="Bar length, one of /udf/config's supported_resolutions.")
    start: EpochS = Field(alias="from", description="Start, epoch seconds (the bar holding it is the first).")
    end: EpochS = Field(alias="to", description="End, epoch seconds (exclusive); not before `from`.")
    countback: Countback = optional(
        f"Bars wanted: the `countback` latest bars before `to` (then `from` is not used), at most {MAX_CANDLES}.")


class Exchange(BaseModel):
    value: str
    name: str
    desc: str


class SymbolType(BaseModel):
    name: str
    value: str


class Config(BaseModel):
    supported_resolutions: list[str]
    supports_search: bool
    supports_group_request: bool
    supports_marks: bool
    supports_timescale_marks: bool
    supports_time: bool
    exchanges: list[Exchange]
    symbols_types: list[SymbolType]


class SymbolInfo(BaseModel):
    name: str
    ticker: str
    full_name: str
    description: str
    type: Literal["crypto"]
    session: Literal["24x7"]
    timezone: Literal["Etc/UTC"]
    exchange: str
    listed_exchange: str
    format: Literal["price"]
    minmov: int = Field(ge=1, description="Tick size in units of 1/pricescale")
    pricescale: int = Field(ge=1, description="10^decimals of the tick size")
    volume_precision: int = Field(ge=0)
    has_intraday: bool
    has_seconds: bool
    seconds_multipliers: list[str]
    intraday_multipliers: list[str]
    has_daily: bool
    daily_multipliers: list[str]
    has_weekly_and_monthly: bool
    supported_resolutions: list[str]
    data_status: Literal["streaming"]


class SearchResult(BaseModel):
    symbol: str
    full_name: str
    description: str
    exchange: str
    ticker: str
    type: Literal["crypto"]


class Bars(BaseModel):
    model_config = ConfigDict(extra="forbid")
    s: Literal["ok"]
    t: list[int] = Field(description="Bar start, epoch seconds, ascending")
    o: list[float]
    h: list[float]
    l: list[float]  # noqa: E741 (UDF's name)
    c: list[float]
    v: list[float]


class NoData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    s: Literal["no_data"]
    nextTime: int | None = Field(None, description="Start of the latest bar before `from`, epoch seconds; "
                                 "absent when there is none")


class History(RootModel[Bars | NoData]):
    pass


class EpochText(RootModel[Annotated[str, Field(pattern="^[0-9]+$")]]):
    """Epoch seconds, as text"""


class UdfError(BaseModel):
    s: Literal["error"]
    errmsg: str


# -- answers -------------------------------------------------------------------------
def config() -> dict:
    return {
        "supported_resolutions": list(RESOLUTIONS),
        "supports_search": True,
        "supports_group_request": False,
        "supports_marks": False,
        "supports_timescale_marks": False,
        "supports_time": True,
        "exchanges": [{"value": "", "name": "All Exchanges", "desc": ""},
                      {"value": EXCHANGE, "name": EXCHANGE, "desc": EXCHANGE}],
        "symbols_types": [{"name": "All types", "value": ""}, {"name": "Crypto", "value": "crypto"}],
    }


def price_scale(tick_size: str | None, last_price: float | None) -> tuple[int, int]:
    """(pricescale, minmov): the tick size as minmov / pricescale ("0.1" -> (10, 1),
    "0.5" -> (10, 5), "5" -> (1, 5)); without one, the decimals of the latest price (at
    least 2, at most 10)."""
    decimals = market.decimals(tick_size)
    if decimals is not None and Decimal(tick_size) > 0:
        scale = 10 ** decimals
        return scale, max(1, int(Decimal(tick_size) * scale))
    shown = format(last_price, ".10g") if last_price is not None else "0"
    return 10 ** min(10, max(2, market.decimals(shown) or 0)), 1


def symbol_info(symbol: str, meta: dict | None, last_price: float | None) -> dict:
    meta = meta or {}
    scale, minmov = price_scale(meta.get("tick_size"), last_price)
    volume_precision = meta.get("size_precision")
    base, quote = meta.get("base"), meta.get("quote")
    return {
        "name": symbol, "ticker": symbol, "full_name": f"{EXCHANGE}:{symbol}",
        "description": f"{base}/{quote} {meta.get('inst_type') or ''}".strip() if base and quote else symbol,
        "type": "crypto", "session": "24x7", "timezone": "Etc/UTC", "exchange": EXCHANGE,
        "listed_exchange": EXCHANGE, "format": "price", "minmov": minmov, "pricescale": scale,
        "volume_precision": 8 if volume_precision is None else volume_precision,
        "has_intraday": bool(MINUTES), "has_seconds": bool(SECONDS), "seconds_multipliers": SECONDS,
        "intraday_multipliers": MINUTES, "has_daily": bool(DAYS), "daily_multipliers": DAYS,
        "has_weekly_and_monthly": False, "supported_resolutions": list(RESOLUTIONS), "data_status": "streaming",
    }


def search(db: Database, text: str, limit: int) -> list[dict]:
    """Symbols with trades whose id holds ``text`` (any case), those starting with it first."""
    text = text.upper().removeprefix(f"{EXCHANGE}:")
    found = sorted((symbol for symbol in market.symbol_names(db) if text in symbol),
                   key=lambda s: (not s.startswith(text), s))[:limit]
    meta = market.instruments(db) if found else {}
    return [{"symbol": s, "full_name": f"{EXCHANGE}:{s}", "description": symbol_info(s, meta.get(s), None)["description"],
             "exchange": EXCHANGE, "ticker": s, "type": "crypto"} for s in found]


def _latest(body: bytes) -> int | None:
    bars = json.loads(body)
    return bars[-1]["time"] if bars else None


def bar_before(db: Database, symbol: str, interval: Interval, t: int) -> int | None:
    """Start of the symbol's latest bar of ``interval`` before the bucket holding ``t``.
    Seconds bars are found through the 1m view first, so no query reads more than a
    minute of trades."""
    if t <= 0:
        return None
    if interval.seconds >= 60:
        return _latest(market.candles_json(db, symbol, interval, 0, t - 1, 1))
    minute = t // 60 * 60
    if t > minute:  # the part of t's minute before t's bucket
        found = _latest(market.candles_json(db, symbol, interval, minute, t - 1, 1))
        if found is not None:
            return found
    earlier = _latest(market.candles_json(db, symbol, INTERVALS["1m"], 0, minute - 1, 1)) if minute > 0 else None
    if earlier is None:
        return None
    return _latest(market.candles_json(db, symbol, interval, earlier, earlier + 59, 1))


def history(db: Database, symbol: str, interval: Interval, start: int, end: int, countback: int | None) -> dict:
    """Bars in [start, end) (the bar holding ``start`` first), or with ``countback`` the
    ``countback`` latest bars before ``end``, as UDF columns; no_data with nextTime (the
    latest bar before) when the range holds none."""
    last = end - 1
    if last < 0 or (countback is None and start > last):
        return {"s": "no_data"}
    if countback is None:
        body = market.candles_json(db, symbol, interval, start, last, MAX_CANDLES)
    else:
        body = market.candles_json(db, symbol, interval, 0, last, countback)
    bars = json.loads(body)
    if not bars:
        before = None if countback is not None else bar_before(db, symbol, interval, start)
        return {"s": "no_data"} if before is None else {"s": "no_data", "nextTime": before}
    return {"s": "ok", "t": [b["time"] for b in bars], "o": [b["open"] for b in bars], "h": [b["high"] for b in bars],
            "l": [b["low"] for b in bars], "c": [b["close"] for b in bars], "v": [b["volume"] for b in bars]}


# -- routes ----------------------------------------------------------------------------
bp = APIBlueprint("udf", __name__)


def _udf_errors(*extra: int) -> dict:
    schema = {"application/json": {"schema": UdfError.model_json_schema()}}
    described = {400: "A parameter is invalid, unknown or repeated; `errmsg` says which and why",
                 404: "No such symbol (`errmsg`: `unknown_symbol`)",
                 503: "QuestDB cannot answer right now; retry later"}
    return {code: {"description": described[code], "content": schema} for code in (400, *extra, 503)}


def _db() -> Database:
    return current_app.extensions["gostream"].db


def _answer(data: Any, status: int = 200) -> Response:
    response = Response(json.dumps(data, separators=(",", ":"), allow_nan=False), status=status,
                        mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/config")
@bp.input(NoQuery, location="query", arg_name="query")
@bp.output(Config, description="What this datafeed supports")
@bp.doc(operation_id="udfConfig", responses={**_udf_errors()})
def udf_config(query: NoQuery) -> Response:
    """UDF: the datafeed's configuration"""
    return _answer(config())


@bp.get("/symbols")
@bp.input(SymbolQuery, location="query", arg_name="query")
@bp.output(SymbolInfo, description="The symbol's information")
@bp.doc(operation_id="udfSymbol", responses=_udf_errors(404))
def udf_symbols(query: SymbolQuery) -> Response:
    """UDF: one symbol's information (a symbol with trades in the store)

    `pricescale`/`minmov` come from the instrument's tick size, `volume_precision` from its lot size;
    where the store has no instrument metadata, `pricescale` follows the decimals of the latest price.
    """
    db, symbol = _db(), _ticker(query.symbol)
    latest = market.last_trade(db, symbol)
    if latest is None:
        return _answer(error_body("unknown_symbol"), 404)
    return _answer(symbol_info(symbol, market.instruments(db).get(symbol), latest[1]))


@bp.get("/search")
@bp.input(SearchQuery, location="query", arg_name="query")
@bp.output(list[SearchResult], description="Matching symbols")
@bp.doc(operation_id="udfSearch", responses=_udf_errors())
def udf_search(query: SearchQuery) -> Response:
    """UDF: symbols with trades whose id holds `query`"""
    return _answer(search(_db(), query.query, query.limit))


@bp.get("/history")
@bp.input(HistoryQuery, location="query", arg_name="query")
@bp.output(History, description="Bars as columns (`ok`), or `no_data` with `nextTime` when earlier bars exist")
@bp.doc(operation_id="udfHistory", responses=_udf_errors())
def udf_history(query: HistoryQuery) -> Response:
    """UDF: bars of a symbol over a time range

    The bars /candles gives for `from` .. `to - 1` (the bar holding `from` first; at most the
    5,000 latest of the range), as columns. With `countback`: the `countback` latest bars before
    `to`. A range without bars: `no_data`, with `nextTime` the start of the latest bar before
    `from` when there is one (a client then asks for that range), without it before the
    symbol's first trade.
    """
    interval = RESOLUTIONS[ALIASES.get(query.resolution, query.resolution)]
    return _answer(history(_db(), _ticker(query.symbol), interval, query.start, query.end, query.countback))


@bp.get("/time")
@bp.input(NoQuery, location="query", arg_name="query")
@bp.output(EpochText, content_type="text/plain", description="Epoch seconds")
@bp.doc(operation_id="udfTime", responses=_udf_errors())
def udf_time(query: NoQuery) -> Response:
    """UDF: the server's time, epoch seconds"""
    return Response(str(int(time.time())), mimetype="text/plain", headers={"Cache-Control": "no-store"})

"""The OKX v5 protocol as pure functions: requests out, typed frames and pages in.

Nothing here does I/O, so every message the exchange can send is testable on its own.
Every parser is total: whatever arrives (bytes, JSON of any shape, numbers as strings
no exchange prints), it returns a value; a bad trade item becomes a short, stable
reason beside the good items of the same message, never an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from gostream.common.trade import MAX_TRADE_ID, RecordError, Trade, loads, show, validate

CHANNELS = ("trades-all", "trades")
# Notice code OKX sends 60 s before a service upgrade cuts the connection.
UPGRADE_NOTICE = "64008"


@dataclass(frozen=True)
class Pong:
    """Answer to our text ``ping``."""


@dataclass(frozen=True)
class Subscribed:
    channel: str
    symbol: str


@dataclass(frozen=True)
class ExchangeError:
    code: str
    message: str


@dataclass(frozen=True)
class Notice:
    """A server notice; code 64008 means: reconnect now, the server is going away."""

    code: str
    message: str


@dataclass(frozen=True)
class OtherEvent:
    """An event we have no use for (unsubscribe, channel-conn-count, ...)."""

    name: str


@dataclass(frozen=True)
class Trades:
    channel: str
    trades: tuple[Trade, ...]
    rejected: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejected:
    """A frame that is not valid OKX protocol; ``reason`` is short and stable."""

    reason: str
    detail: str = ""


Frame = Pong | Subscribed | ExchangeError | Notice | OtherEvent | Trades | Rejected


@dataclass(frozen=True)
class HistoryPage:
    """One REST ``GET /api/v5/market/history-trades`` answer."""

    trades: tuple[Trade, ...]  # valid items, in the order sent (OKX: newest first)
    rejected: tuple[str, ...] = ()  # one reason per bad item
    # Smallest tradeId among ALL items whose tradeId is a valid id string, rejected ones
    # included (for paging with ``after``); None if none.
    oldest_id: int | None = None
    # Set when the envelope is not a success (OKX code != "0", not JSON, not an object,
    # data not a list ...); trades are empty then.
    error: str | None = None


def subscribe_request(channel: str, symbols: tuple[str, ...], op: str = "subscribe") -> str:
    """A subscribe (or, with ``op``, unsubscribe) request for ``symbols``."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}, expected one of {CHANNELS}")
    if op not in ("subscribe", "unsubscribe"):
        raise ValueError(f"unknown op {op!r}")
    args = [{"channel": channel, "instId": symbol} for symbol in symbols]
    return json.dumps({"op": op, "args": args}, separators=(",", ":"))


def parse_trade(item: object, received_us: int) -> Trade:
    """One element of a push's ``data`` array (same shape in REST history-trades).

    Raises RecordError, and nothing else, for anything that is not a valid trade."""
    if not isinstance(item, dict):
        raise RecordError("bad-item", type(item).__name__)
    try:
        trade = Trade(
            symbol=item["instId"],
            trade_id=_digits(item["tradeId"], "trade_id"),
            price=_decimal(item["px"], "price"),
            size=_decimal(item["sz"], "size"),
            side=item["side"],
            ts_ms=_digits(item["ts"], "ts"),
            received_us=received_us,
            count=_digits(item.get("count", "1"), "count"),
        )
    except KeyError as exc:
        raise RecordError("missing-field", str(exc.args[0])[:40]) from None
    return validate(trade)


# What OKX prints: ASCII digits, and for decimals at most one point with digits on both
# sides ("30000.1", "0.0001", "1"). float() takes much more (".", "1e5", "nan", " 1",
# "1_0", "٣"), none of which an exchange sends, and some of which make it raise.
_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,30}(\.[0-9]{1,30})?", re.ASCII)


def _digits(value: object, name: str) -> int:
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        raise RecordError(f"bad-{name}", show(value))
    return int(value)


def _decimal(value: object, name: str) -> float:
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise RecordError(f"bad-{name}", show(value))
    return float(value)


def _load_json(text: str | bytes) -> tuple[object, str | None]:
    """(value, None) or (None, why not). Deep nesting is a RecursionError in json."""
    try:
        return loads(text), None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"


def parse_frame(text: str | bytes, received_us: int) -> Frame:
    """Classify one WebSocket message. Never raises: bad input becomes ``Rejected``."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except UnicodeDecodeError:
            return Rejected("not-utf8")
    if not isinstance(text, str):
        return Rejected("not-text", type(text).__name__)
    if text == "pong":
        return Pong()
    msg, problem = _load_json(text)
    if problem is not None:
        return Rejected("not-json", problem)
    if not isinstance(msg, dict):
        return Rejected("not-object", type(msg).__name__)

    event = msg.get("event")
    if event is not None:
        return _parse_event(msg, event)

    arg, data = msg.get("arg"), msg.get("data")
    if not isinstance(arg, dict) or not isinstance(data, list):
        return Rejected("unknown-message", text[:200])
    channel = arg.get("channel")
    if not isinstance(channel, str) or channel not in CHANNELS:
        return Rejected("unknown-channel", show(channel))
    trades, rejected = _parse_items(data, received_us)
    return Trades(channel, tuple(trades), tuple(rejected))


def _parse_items(data: list, received_us: int) -> tuple[list[Trade], list[str]]:
    trades, rejected = [], []
    for item in data:
        try:
            trades.append(parse_trade(item, received_us))
        except RecordError as exc:
            rejected.append(exc.reason)
    return trades, rejected


def _text(value: object) -> str | None:
    """An event field as text: strings as they are, numbers (OKX sends codes as strings,
    but a number means the same) printed, missing as ""; anything else is None."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return show(value)
    return None


def _parse_event(msg: dict, event: object) -> Frame:
    if not isinstance(event, str):
        return Rejected("bad-event", show(event))
    if event == "subscribe":
        arg = msg.get("arg")
        if arg is None:
            arg = {}
        if not isinstance(arg, dict):
            return Rejected("bad-arg", type(arg).__name__)
        channel, symbol = _text(arg.get("channel")), _text(arg.get("instId"))
        if channel is None or symbol is None:
            return Rejected("bad-arg", f"channel={show(arg.get('channel'))} instId={show(arg.get('instId'))}")
        return Subscribed(channel, symbol)
    if event in ("error", "notice"):
        code, message = _text(msg.get("code")), _text(msg.get("msg"))
        if code is None:
            return Rejected("bad-code", show(msg.get("code")))
        if message is None:
            return Rejected("bad-msg", show(msg.get("msg")))
        return ExchangeError(code, message) if event == "error" else Notice(code, message)
    return OtherEvent(event)


def parse_history_page(body: str | bytes, received_us: int) -> HistoryPage:
    """One REST ``history-trades`` answer body. Never raises: a bad envelope sets
    ``error``, a bad item adds its reason to ``rejected`` and the others are kept."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode()
        except UnicodeDecodeError:
            return HistoryPage((), error="not utf-8")
    if not isinstance(body, str):
        return HistoryPage((), error=f"not text ({type(body).__name__})")
    envelope, problem = _load_json(body)
    if problem is not None:
        return HistoryPage((), error=f"not JSON: {problem}")
    if not isinstance(envelope, dict):
        return HistoryPage((), error=f"not an object ({type(envelope).__name__})")
    code, message = envelope.get("code"), envelope.get("msg")
    if code != "0":
        shown_code = code if isinstance(code, str) else show(code)
        shown_msg = message if isinstance(message, str) else show(message)
        return HistoryPage((), error=f"okx code {shown_code[:40]}: {shown_msg[:200]}")
    data = envelope.get("data")
    if not isinstance(data, list):
        return HistoryPage((), error=f"data is not a list ({type(data).__name__})")
    trades, rejected = _parse_items(data, received_us)
    ids = [_trade_id(item) for item in data]
    oldest = min((i for i in ids if i is not None), default=None)
    return HistoryPage(tuple(trades), tuple(rejected), oldest)


def _trade_id(item: object) -> int | None:
    if not isinstance(item, dict):
        return None
    value = item.get("tradeId")
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        return None
    trade_id = int(value)
    return trade_id if 1 <= trade_id <= MAX_TRADE_ID else None

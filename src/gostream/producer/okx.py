"""The OKX v5 WebSocket protocol as pure functions: requests out, typed frames in.

Nothing here does I/O, so every frame the exchange can send is testable on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gostream.common.trade import RecordError, Trade, validate

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


def subscribe_request(channel: str, symbols: tuple[str, ...]) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}, expected one of {CHANNELS}")
    args = [{"channel": channel, "instId": symbol} for symbol in symbols]
    return json.dumps({"op": "subscribe", "args": args}, separators=(",", ":"))


def parse_trade(item: object, received_us: int) -> Trade:
    """One element of a push's ``data`` array (same shape in REST history-trades)."""
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
        raise RecordError("missing-field", str(exc)) from None
    return validate(trade)


def _digits(value: object, name: str) -> int:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 19:
        raise RecordError(f"bad-{name}", repr(value))
    return int(value)


def _decimal(value: object, name: str) -> float:
    # OKX sends numbers as decimal strings; refuse anything float() would also take
    # that no exchange prints (nan, inf, 1e5, whitespace, underscores).
    if not isinstance(value, str) or not value or len(value) > 40 or value.strip("0123456789.") or value.count(".") > 1:
        raise RecordError(f"bad-{name}", repr(value))
    return float(value)


def parse_frame(text: str | bytes, received_us: int) -> Frame:
    """Classify one WebSocket message. Never raises: bad input becomes ``Rejected``."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError:
            return Rejected("not-utf8")
    if text == "pong":
        return Pong()
    try:
        msg = json.loads(text)
    except ValueError as exc:
        return Rejected("not-json", str(exc)[:200])
    if not isinstance(msg, dict):
        return Rejected("not-object", type(msg).__name__)

    event = msg.get("event")
    if event is not None:
        return _parse_event(msg, event)

    arg, data = msg.get("arg"), msg.get("data")
    if not isinstance(arg, dict) or not isinstance(data, list):
        return Rejected("unknown-message", text[:200])
    channel = arg.get("channel")
    if channel not in CHANNELS:
        return Rejected("unknown-channel", repr(channel))
    trades, rejected = [], []
    for item in data:
        try:
            trades.append(parse_trade(item, received_us))
        except RecordError as exc:
            rejected.append(exc.reason)
    return Trades(channel, tuple(trades), tuple(rejected))


def _parse_event(msg: dict, event: object) -> Frame:
    if event == "subscribe":
        arg = msg.get("arg") or {}
        return Subscribed(str(arg.get("channel", "")), str(arg.get("instId", "")))
    if event == "error":
        return ExchangeError(str(msg.get("code", "")), str(msg.get("msg", "")))
    if event == "notice":
        return Notice(str(msg.get("code", "")), str(msg.get("msg", "")))
    if isinstance(event, str):
        return OtherEvent(event)
    return Rejected("bad-event", repr(event))

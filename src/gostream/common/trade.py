"""The trade record and its Kafka codec.

A record value is compact JSON with a schema version, so a reader can refuse what it
does not understand and a person can read the topic with any console tool. Version 2,
what the producer writes, carries the trades of one symbol that were ready together
(one under light load, hundreds in a burst): kafka-python's cost is per record, so
batching divides it on both ends.

    {"v":2,"symbol":"BTC-USDT","trades":[{"trade_id":338476307,"price":30236.0,
     "size":0.0002,"side":"buy","ts":1652459224818,"received":1652459224901234,"count":1}]}

Version 1, one trade per record, is still read:

    {"v":1,"symbol":"BTC-USDT","trade_id":338476307,"price":30236.0,"size":0.0002,
     "side":"buy","ts":1652459224818,"received":1652459224901234,"count":1}

``ts`` is the exchange time in milliseconds, ``received`` the producer's receipt time in
microseconds, ``count`` the number of fills aggregated into the trade (1 on ``trades-all``).
A record is accepted or refused whole: one bad trade sends the record to the dead letters.
JSON is read and written with orjson: the standard library's json was the largest single
item of the consumer's CPU per trade and a large one of the producer's (py-spy, issue 18).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

SCHEMA_VERSION = 1  # one trade per record
BATCH_VERSION = 2  # the trades of one symbol
SIDES = ("buy", "sell")
# OKX instrument ids: BTC-USDT, BTC-USD-SWAP, BTC-USD-250627-100000-C ...
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{1,20}(-[A-Z0-9]{1,20}){1,4}$")
# Exchange times outside 2009..2100 are corrupt, not trades; so are receipt times.
MIN_TS_MS, MAX_TS_MS = 1_230_768_000_000, 4_102_444_800_000
MIN_RECEIVED_US, MAX_RECEIVED_US = MIN_TS_MS * 1000, MAX_TS_MS * 1000
# What the QuestDB columns hold: trade_id LONG (its minimum is NULL), fills INT.
MAX_TRADE_ID = 2**63 - 1
MAX_COUNT = 2**31 - 1


def inst_type(symbol: str) -> str:
    """OKX's instrument type, from the shape of its id: BTC-USDT-SWAP, BTC-USD-250627
    (a delivery date: FUTURES), BTC-USD-250627-100000-C (OPTION), else SPOT."""
    parts = symbol.split("-")
    if parts[-1] == "SWAP":
        return "SWAP"
    if len(parts) == 5 and parts[-1] in ("C", "P"):
        return "OPTION"
    if len(parts) == 3 and parts[-1].isdigit():
        return "FUTURES"
    return "SPOT"


# Not frozen (nothing changes a Trade once made): a frozen dataclass's __init__ sets each
# field through object.__setattr__, ~3x the time, and a Trade is made per trade on both
# ends (py-spy, issue 18). Still hashable, by value.
@dataclass(slots=True, unsafe_hash=True)
class Trade:
    symbol: str
    trade_id: int
    price: float
    size: float
    side: str
    ts_ms: int
    received_us: int
    count: int = 1


class RecordError(ValueError):
    """A record that is not a valid trade; ``reason`` is short and stable (a DLQ header)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def validate(trade: Trade) -> Trade:
    """Return ``trade`` if every field is plausible and fits its QuestDB column, else
    raise RecordError. Never raises anything else, whatever the fields hold."""
    if not isinstance(trade.symbol, str) or not _symbol_ok(trade.symbol):
        raise RecordError("bad-symbol", show(trade.symbol))
    _require_int("trade_id", trade.trade_id, minimum=1, maximum=MAX_TRADE_ID)
    for name in ("price", "size"):
        value = getattr(trade, name)
        if not _positive_finite(value):
            raise RecordError(f"bad-{name}", show(value))
    if not isinstance(trade.side, str) or trade.side not in SIDES:
        raise RecordError("bad-side", show(trade.side))
    _require_int("ts", trade.ts_ms, minimum=MIN_TS_MS, maximum=MAX_TS_MS)
    _require_int("received", trade.received_us, minimum=MIN_RECEIVED_US, maximum=MAX_RECEIVED_US)
    _require_int("count", trade.count, minimum=1, maximum=MAX_COUNT)
    return trade


@functools.lru_cache(maxsize=4096)
def _symbol_ok(symbol: str) -> bool:
    """The pattern, remembered: a feed repeats the same few hundred symbols at most."""
    return SYMBOL_PATTERN.fullmatch(symbol) is not None


def _positive_finite(value: object) -> bool:
    if type(value) is float:  # the common case first; NaN fails both comparisons
        return 0.0 < value < math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        as_float = float(value)  # an int beyond the float range raises OverflowError
    except OverflowError:
        return False
    return math.isfinite(as_float) and as_float > 0


def _require_int(name: str, value: object, minimum: int, maximum: int) -> None:
    if type(value) is int and minimum <= value <= maximum:  # the common case first
        return
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise RecordError(f"bad-{name}", show(value))


def show(value: object, limit: int = 80) -> str:
    """A short rendering of an untrusted value for an error's detail; never raises
    (``repr`` of a deeply nested container can hit the recursion limit, of a huge int
    the digit limit, so containers and huge ints are named, not printed)."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 128 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, (str, bytes)):
        text = repr(value[:limit])
        return text if len(value) <= limit else text + "..."
    return f"<{type(value).__name__}>"


def loads(data: bytes | bytearray | str) -> object:
    """JSON -> Python, fast: orjson. What orjson refuses (NaN, lone surrogates, integers
    beyond 64 bits, nesting deeper than 1,024) is read by json as before, so the verdict on
    odd input (and its reason) is json's; only bad input pays twice. Raises ValueError or
    RecursionError."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _fields(trade: Trade) -> dict:
    return {
        "trade_id": trade.trade_id,
        "price": float(trade.price),
        "size": float(trade.size),
        "side": trade.side,
        "ts": trade.ts_ms,
        "received": trade.received_us,
        "count": trade.count,
    }


def encode(trade: Trade) -> bytes:
    """A version 1 record: one trade."""
    return orjson.dumps({"v": SCHEMA_VERSION, "symbol": trade.symbol, **_fields(trade)})


def encode_batch(trades: Sequence[Trade]) -> bytes:
    """A version 2 record: trades of one symbol, in order."""
    if not trades:
        raise ValueError("a batch record needs at least one trade")
    symbol = trades[0].symbol
    if any(t.symbol != symbol for t in trades):
        raise ValueError("a batch record holds trades of one symbol")
    return orjson.dumps({"v": BATCH_VERSION, "symbol": symbol, "trades": [_fields(t) for t in trades]})


_FIELDS = ("trade_id", "price", "size", "side", "ts", "received", "count")


def decode(value: bytes | None) -> list[Trade]:
    """The trades of one record value (either version), or RecordError saying why not."""
    if value is None:
        raise RecordError("empty", "record has no value")
    if not isinstance(value, (bytes, bytearray, str)):
        raise RecordError("not-bytes", type(value).__name__)
    try:
        obj = loads(value)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RecordError("not-json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise RecordError("not-object", type(obj).__name__)
    version = obj.get("v")
    if type(version) is not int:  # noqa: E721 - True == 1 and 1.0 == 1 are no versions
        raise RecordError("bad-version", show(version))
    if version == SCHEMA_VERSION:
        if "symbol" not in obj:
            raise RecordError("missing-field", "symbol")
        return [_trade(obj["symbol"], obj)]
    if version == BATCH_VERSION:
        symbol, items = obj.get("symbol"), obj.get("trades")
        if symbol is None or items is None:
            raise RecordError("missing-field", ",".join(k for k in ("symbol", "trades") if obj.get(k) is None))
        if not isinstance(items, list) or not items:
            raise RecordError("bad-trades", "expected a non-empty array")
        trades = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise RecordError("not-object", f"trade {index}: {type(item).__name__}")
            try:
                trades.append(_trade(symbol, item))
            except RecordError as exc:
                raise RecordError(exc.reason, f"trade {index} of {len(items)}: {exc.detail}") from None
        return trades
    raise RecordError("bad-version", show(version))


def _trade(symbol: object, obj: dict) -> Trade:
    # Look the fields up and list the missing ones only when one is (a check of all seven
    # per trade was a third of this function's time: issue 18).
    try:
        trade = Trade(symbol, obj["trade_id"], obj["price"], obj["size"], obj["side"], obj["ts"], obj["received"],
                      obj["count"])
    except KeyError:
        raise RecordError("missing-field", ",".join(name for name in _FIELDS if name not in obj)) from None
    return validate(trade)

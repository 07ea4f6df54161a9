"""The trade record and its Kafka codec.

A record value is compact JSON with a schema version, so a reader can refuse what it
does not understand and a person can read the topic with any console tool:

    {"v":1,"symbol":"BTC-USDT","trade_id":338476307,"price":30236.0,"size":0.0002,
     "side":"buy","ts":1652459224818,"received":1652459224901234,"count":1}

``ts`` is the exchange time in milliseconds, ``received`` the producer's receipt time in
microseconds, ``count`` the number of fills aggregated into the trade (1 on ``trades-all``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

SCHEMA_VERSION = 1
SIDES = ("buy", "sell")
# OKX instrument ids: BTC-USDT, BTC-USD-SWAP, BTC-USD-250627-100000-C ...
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{1,20}(-[A-Z0-9]{1,20}){1,4}$")
# Exchange times outside 2009..2100 are corrupt, not trades.
MIN_TS_MS, MAX_TS_MS = 1_230_768_000_000, 4_102_444_800_000


@dataclass(frozen=True, slots=True)
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
    """Return ``trade`` if every field is plausible, else raise RecordError."""
    if not isinstance(trade.symbol, str) or not SYMBOL_PATTERN.match(trade.symbol):
        raise RecordError("bad-symbol", repr(trade.symbol))
    _require_int("trade_id", trade.trade_id, minimum=1)
    for name in ("price", "size"):
        value = getattr(trade, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise RecordError(f"bad-{name}", repr(value))
    if trade.side not in SIDES:
        raise RecordError("bad-side", repr(trade.side))
    _require_int("ts", trade.ts_ms, minimum=MIN_TS_MS, maximum=MAX_TS_MS)
    _require_int("received", trade.received_us, minimum=1)
    _require_int("count", trade.count, minimum=1)
    return trade


def _require_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RecordError(f"bad-{name}", repr(value))
    if maximum is not None and value > maximum:
        raise RecordError(f"bad-{name}", repr(value))


def encode(trade: Trade) -> bytes:
    return json.dumps(
        {
            "v": SCHEMA_VERSION,
            "symbol": trade.symbol,
            "trade_id": trade.trade_id,
            "price": float(trade.price),
            "size": float(trade.size),
            "side": trade.side,
            "ts": trade.ts_ms,
            "received": trade.received_us,
            "count": trade.count,
        },
        separators=(",", ":"),
    ).encode()


_FIELDS = ("symbol", "trade_id", "price", "size", "side", "ts", "received", "count")


def decode(value: bytes | None) -> Trade:
    """Decode one record value or raise RecordError saying why not."""
    if value is None:
        raise RecordError("empty", "record has no value")
    try:
        obj = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordError("not-json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise RecordError("not-object", type(obj).__name__)
    if obj.get("v") != SCHEMA_VERSION:
        raise RecordError("bad-version", repr(obj.get("v")))
    missing = [name for name in _FIELDS if name not in obj]
    if missing:
        raise RecordError("missing-field", ",".join(missing))
    return validate(
        Trade(
            symbol=obj["symbol"],
            trade_id=obj["trade_id"],
            price=obj["price"],
            size=obj["size"],
            side=obj["side"],
            ts_ms=obj["ts"],
            received_us=obj["received"],
            count=obj["count"],
        )
    )

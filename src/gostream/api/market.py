"""What the endpoints answer, as plain data: candles, buckets, stats, trades, symbols.

Times: the API speaks epoch seconds for candles and epoch milliseconds for trades;
QuestDB timestamps are microseconds, converted here and nowhere else.

Numbers: prices are printed with the decimals of the symbol's tick size, sizes and volumes
with those of its lot size (OKX's metadata, stored by the producer in ``instruments``);
without metadata, with 12 significant digits. A sum of doubles (a volume, a change) is
never sent with its binary noise (4.465000699999999): rounded, Python prints the shortest
text of the number, the decimal it stands for.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from gostream.api import queries as q
from gostream.api.db import Database, Unavailable

US = 1_000_000
MINUTE_US = 60 * US
DAY_US = 86_400 * US


# -- instrument metadata and the decimals it gives -------------------------------------
INSTRUMENTS_TTL_S = 10.0  # metadata changes rarely: each worker reads the table this often
SIGNIFICANT = 12  # digits kept of a number whose symbol has no metadata


def decimals(size: str | None) -> int | None:
    """Decimals of an OKX size ("0.001" -> 3, "1" and "10" -> 0), None if not a number."""
    try:
        exponent = Decimal(size).normalize().as_tuple().exponent
    except (InvalidOperation, TypeError, ValueError):
        return None
    return max(0, -exponent) if isinstance(exponent, int) and exponent > -30 else None


def _significant(x: float) -> float:
    return float(f"{x:.{SIGNIFICANT}g}")


def rounded(x: float, places: int | None) -> float:
    """``x`` with at most ``places`` decimals (None: 12 significant digits), and never more
    than 15 significant digits (a double's 16th and 17th are its binary noise)."""
    return _significant(x) if places is None else float(f"{round(x, places):.15g}")


def _text_rounder(places: int | None) -> Callable[[str], str]:
    """What ``rounded`` does, from and to the text of a number (the /candles fast path):
    a printf format, cheaper than a float round trip."""
    form = "%.12g" if places is None else f"%.{places}f"

    def tidy(text: str) -> str:
        x = float(text)
        out = form % x
        if len(out) > 16:  # maybe more than 15 significant digits: the float way
            return repr(rounded(x, places))
        if "." in out and places is not None:
            out = out.rstrip("0")
        # As Python prints a float: 0.3, 1.0, 1.23e-05 (never "1", which reads back as an int).
        return out + "0" if out.endswith(".") else out if "." in out or "e" in out else out + ".0"
    return tidy


@dataclass(frozen=True)
class Digits:
    """How one symbol's numbers are printed: ``price(x)`` and ``size(x)`` round a float
    (None stays None), ``size_text`` a volume's text as QuestDB sent it."""

    price_decimals: int | None
    size_decimals: int | None

    def price(self, x: float | None) -> float | None:
        return None if x is None else rounded(x, self.price_decimals)

    def size(self, x: float | None) -> float | None:
        return None if x is None else rounded(x, self.size_decimals)

    @functools.cached_property
    def size_text(self) -> Callable[[str], str]:
        return _text_rounder(self.size_decimals)


@functools.lru_cache(maxsize=None)
def _digits(price_decimals: int | None, size_decimals: int | None) -> Digits:
    return Digits(price_decimals, size_decimals)


UNKNOWN = _digits(None, None)


class _Instruments:
    """The ``instruments`` table, read at most every ``INSTRUMENTS_TTL_S`` per worker (one
    reader at a time; the others get what was read last)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_db: weakref.WeakKeyDictionary[Database, tuple[float, dict[str, dict]]] = weakref.WeakKeyDictionary()

    def get(self, db: Database) -> dict[str, dict]:
        now = time.monotonic()
        read_at, data = self.by_db.get(db, (None, {}))
        if read_at is not None and now - read_at < INSTRUMENTS_TTL_S:
            return data
        if not self.lock.acquire(blocking=read_at is None):
            return data  # another thread is reading it
        try:
            read_at, data = self.by_db.get(db, (None, {}))
            if read_at is not None and time.monotonic() - read_at < INSTRUMENTS_TTL_S:
                return data
            try:
                rows = db.query(q.INSTRUMENTS)
            except Unavailable:  # no table yet (an older consumer), QuestDB down: numbers without metadata
                rows = None
            if rows is not None:
                data = {row[0]: _instrument(*row) for row in rows}
            # A failed read is tried again in a few seconds, not every request.
            self.by_db[db] = (time.monotonic() - (0 if rows is not None else INSTRUMENTS_TTL_S - 5), data)
            return data
        finally:
            self.lock.release()


def _instrument(symbol, inst_type, tick_sz, lot_sz, base, quote, state) -> dict:
    return {"symbol": symbol, "inst_type": inst_type, "tick_size": tick_sz, "lot_size": lot_sz,
            "price_precision": decimals(tick_sz), "size_precision": decimals(lot_sz),
            "base": base, "quote": quote, "state": state}


_instruments = _Instruments()


def instruments(db: Database) -> dict[str, dict]:
    """What OKX says of each symbol whose metadata the producer stored, by symbol:
    symbol, inst_type, tick_size and lot_size (OKX's text), price_precision and
    size_precision (their decimals), base, quote, state."""
    return _instruments.get(db)


def digits_of(meta: dict | None) -> Digits:
    """How the numbers of a symbol with this metadata (an ``instruments`` value) print."""
    return UNKNOWN if meta is None else _digits(meta["price_precision"], meta["size_precision"])


def digits(db: Database, symbol: str) -> Digits:
    return digits_of(instruments(db).get(symbol))


def last_trade(db: Database, symbol: str) -> tuple[int, float] | None:
    """(time in µs, price) of the symbol's latest trade, or None."""
    rows = db.query(q.LAST_TRADE_TIME, {"symbol": symbol})
    return (rows[0][0], rows[0][1]) if rows else None


# One candle of the JSON body; the values are QuestDB's own number text.
_CANDLE = '{"time":%s,"open":%s,"high":%s,"low":%s,"close":%s,"volume":%s}'


def candles_json(db: Database, symbol: str, interval: q.Interval, start: int | None, end: int | None, limit: int) -> bytes:
    """Candles whose buckets run from the one holding ``start`` to the one holding ``end``
    (epoch s), at most the ``limit`` latest, ascending, as the JSON array /candles answers.
    Without ``end``: up to the symbol's latest trade, whose bucket is computed from the
    trades themselves (the 1m view may not have caught up yet, as for /stream); without
    ``start``: the ``limit`` buckets ending at ``end``. Buckets without trades have no candle.

    The body is pasted from the numbers' text as QuestDB sent it: no float is parsed into
    Python and printed again (that and 1,440 dicts were most of the time of a day of 1m bars)."""
    step = interval.seconds
    latest_us = None
    if end is None:
        latest = last_trade(db, symbol)
        if latest is None:
            return b"[]"
        latest_us = latest[0]
        end = latest_us // US
    hi_bucket = end // step * step
    lo_bucket = hi_bucket - (limit - 1) * step if start is None else start // step * step
    lo_bucket = max(lo_bucket, 0)  # nothing before the epoch (QuestDB rejects a negative timestamp)
    if lo_bucket > hi_bucket:
        return b"[]"
    rows = db.query(
        interval.sql,
        {"symbol": symbol, "lo": lo_bucket * US, "hi": (hi_bucket + step) * US, "limit": limit},
        numbers_as_text=True,
    )
    numbers = digits(db, symbol)
    # Prices are stored values (first, max, min, last of them) and print as OKX sent them;
    # a volume is a sum and may carry noise: a double printed with 16 or more characters
    # (15 significant digits always print exactly) is rounded.
    size = numbers.size_text
    rows = [row if row[5] is None or len(row[5]) < 16 else (*row[:5], size(row[5])) for row in rows]
    if latest_us is not None and interval.source != "raw":
        forming = bucket_candle(db, symbol, interval, hi_bucket, latest_us, numbers)
        if forming is not None:
            values = (forming[k] for k in ("open", "high", "low", "close", "volume"))
            row = (str(hi_bucket), *(json.dumps(v, allow_nan=False) for v in values))
            if rows and rows[0][0] == row[0]:  # newest first
                rows[0] = row
            else:
                rows.insert(0, row)
                del rows[limit:]
    rows.reverse()
    body = "[" + ",".join([_CANDLE % row for row in rows]) + "]"
    if "None" in body:  # SQL NULL (QuestDB's NaN), written as json.dumps would
        body = body.replace("None", "null")
    if "N" in body or "I" in body:  # NaN, Infinity: never sent by QuestDB (NULL instead), never valid JSON
        raise ValueError(f"QuestDB sent a number that is not valid JSON for {symbol} {interval.name}")
    return body.encode()


def _merge(parts: list[tuple]) -> dict | None:
    """Join (open, high, low, close, volume, n) aggregates of consecutive time ranges."""
    parts = [p for p in parts if p and p[5]]
    if not parts:
        return None
    return {
        "open": parts[0][0],
        "high": max(p[1] for p in parts),
        "low": min(p[2] for p in parts),
        "close": parts[-1][3],
        "volume": sum(p[4] for p in parts),
        "trades": sum(int(p[5]) for p in parts),
    }


def _aggregate(db: Database, symbol: str, lo_us: int, hi_us: int, latest_us: int) -> dict | None:
    """OHLCV over [lo, hi): whole minutes before the latest trade's minute from the 1m
    view, the rest from the trades (so the answer never waits for the view)."""
    minute = latest_us // MINUTE_US * MINUTE_US
    view_lo = -(-lo_us // MINUTE_US) * MINUTE_US  # first whole minute
    view_hi = min(minute, hi_us)
    if view_hi - view_lo < MINUTE_US:
        parts = [db.query(q.BUCKET_FROM_TRADES, {"symbol": symbol, "lo": lo_us, "hi": hi_us})[0]]
    else:
        parts = []
        if lo_us < view_lo:
            parts.append(db.query(q.BUCKET_FROM_TRADES, {"symbol": symbol, "lo": lo_us, "hi": view_lo})[0])
        parts.append(db.query(q.BUCKET_FROM_VIEW, {"symbol": symbol, "lo": view_lo, "hi": view_hi})[0])
        if view_hi < hi_us:
            parts.append(db.query(q.BUCKET_FROM_TRADES, {"symbol": symbol, "lo": view_hi, "hi": hi_us})[0])
    return _merge(parts)


def bucket_candle(db: Database, symbol: str, interval: q.Interval, bucket_s: int, latest_us: int,
                  numbers: Digits | None = None) -> dict | None:
    """The candle of one bucket (the forming one, for /stream), or None if it has no trades."""
    lo = bucket_s * US
    merged = _aggregate(db, symbol, lo, lo + interval.seconds * US, latest_us)
    if merged is None:
        return None
    numbers = numbers or digits(db, symbol)
    price = numbers.price
    return {"time": bucket_s, "open": price(merged["open"]), "high": price(merged["high"]),
            "low": price(merged["low"]), "close": price(merged["close"]), "volume": numbers.size(merged["volume"])}


def stats(db: Database, symbol: str) -> dict:
    """Last price and the rolling 24 hours up to the symbol's latest trade."""
    latest = last_trade(db, symbol)
    if latest is None:
        return {"symbol": symbol, "time_ms": None, "last": None, "open": None, "high": None, "low": None,
                "volume": None, "trades": 0, "change": None, "change_pct": None}
    latest_us, last = latest
    window = _aggregate(db, symbol, latest_us - DAY_US + 1, latest_us + 1, latest_us) or {}
    opened = window.get("open", last)
    numbers = digits(db, symbol)
    price = numbers.price
    return {
        "symbol": symbol,
        "time_ms": latest_us // 1000,
        "last": price(last),
        "open": price(opened),
        "high": price(window.get("high", last)),
        "low": price(window.get("low", last)),
        "volume": numbers.size(window.get("volume", 0.0)),
        "trades": window.get("trades", 0),
        "change": price(last - opened),
        "change_pct": percent(last, opened),
    }


def percent(last: float | None, opened: float | None) -> float | None:
    """The change from ``opened`` to ``last`` in percent, 12 significant digits (None
    without an open): a ratio has no decimals of its own, and no noise either."""
    return _significant((last - opened) / opened * 100) if last is not None and opened else None


def _trade(row: tuple) -> dict:
    t, trade_id, price, size, side = row[:5]
    return {"id": trade_id, "time_ms": t // 1000, "price": price, "size": size, "side": side}


def recent_trades(db: Database, symbol: str, limit: int) -> list[dict]:
    """The latest trades, newest first."""
    return [_trade(row) for row in db.query(q.RECENT_TRADES, {"symbol": symbol, "limit": limit})]


def last_cursor(db: Database, symbol: str) -> tuple[int, int] | None:
    """(time in µs, trade id) of the symbol's last trade in /stream's order, or None."""
    latest = last_trade(db, symbol)
    if latest is None:
        return None
    rows = db.query(q.MAX_ID_AT, {"symbol": symbol, "at": latest[0]})
    return latest[0], rows[0][0] if rows and rows[0][0] is not None else -1


def trades_after(db: Database, symbol: str, cursor: tuple[int, int], limit: int) -> list[tuple]:
    """Raw rows (t µs, id, price, size, side, fills) after ``cursor`` in (time, id) order."""
    return db.query(q.TRADES_AFTER, {"symbol": symbol, "at": cursor[0], "id": cursor[1], "limit": limit})


def trades_between(db: Database, symbol: str, after: tuple[int, int], upto: tuple[int, int], limit: int) -> list[tuple]:
    """Raw rows after ``after`` up to and including ``upto``, in (time, id) order."""
    return db.query(q.TRADES_BETWEEN, {"symbol": symbol, "at": after[0], "id": after[1], "to_at": upto[0],
                                       "to_id": upto[1], "limit": limit})


def day_start_us(now_s: float | None = None) -> int:
    """Where the rolling 24 h of /symbols and the tickers start: the minute holding now - 24 h."""
    now_us = int((time.time() if now_s is None else now_s) * US)
    return (now_us - DAY_US) // MINUTE_US * MINUTE_US


def symbol_names(db: Database) -> list[str]:
    """Every symbol with trades, ascending (one row per symbol from the 1m view: cheap, for
    searches; ``symbols`` adds the 24 h figures)."""
    return [row[0] for row in db.query(q.SYMBOLS)]


_META_FIELDS = ("inst_type", "tick_size", "lot_size", "price_precision", "size_precision")


def symbols(db: Database) -> list[dict]:
    """Every symbol with trades, ascending: its last price (the latest 1m close) and that
    candle's time, the change and volume over the 1m candles of the last 24 h (null when
    it has none), and its metadata (null when the producer stored none)."""
    meta = instruments(db)
    out = []
    for symbol, close, t, opened, volume in db.query(q.SYMBOLS_24H, {"since": day_start_us()}):
        known = meta.get(symbol)
        numbers = digits_of(known)
        out.append({"symbol": symbol, "last": numbers.price(close), "time": t // US,
                    "change_pct_24h": percent(close, opened), "volume_24h": numbers.size(volume),
                    **{name: None if known is None else known[name] for name in _META_FIELDS}})
    return out

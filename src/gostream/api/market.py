"""What the endpoints answer, as plain data: candles, buckets, stats, trades, symbols.

Times: the API speaks epoch seconds for candles and epoch milliseconds for trades;
QuestDB timestamps are microseconds, converted here and nowhere else.
"""

from __future__ import annotations

import json

from gostream.api import queries as q
from gostream.api.db import Database

US = 1_000_000
MINUTE_US = 60 * US
DAY_US = 86_400 * US


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
    if latest_us is not None and interval.source != "raw":
        forming = bucket_candle(db, symbol, interval, hi_bucket, latest_us)
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


def bucket_candle(db: Database, symbol: str, interval: q.Interval, bucket_s: int, latest_us: int) -> dict | None:
    """The candle of one bucket (the forming one, for /stream), or None if it has no trades."""
    lo = bucket_s * US
    merged = _aggregate(db, symbol, lo, lo + interval.seconds * US, latest_us)
    if merged is None:
        return None
    merged.pop("trades")
    return {"time": bucket_s, **merged}


def stats(db: Database, symbol: str) -> dict:
    """Last price and the rolling 24 hours up to the symbol's latest trade."""
    latest = last_trade(db, symbol)
    if latest is None:
        return {"symbol": symbol, "time_ms": None, "last": None, "open": None, "high": None, "low": None,
                "volume": None, "trades": 0, "change": None, "change_pct": None}
    latest_us, price = latest
    window = _aggregate(db, symbol, latest_us - DAY_US + 1, latest_us + 1, latest_us) or {}
    opened = window.get("open", price)
    return {
        "symbol": symbol,
        "time_ms": latest_us // 1000,
        "last": price,
        "open": opened,
        "high": window.get("high", price),
        "low": window.get("low", price),
        "volume": window.get("volume", 0.0),
        "trades": window.get("trades", 0),
        "change": price - opened,
        "change_pct": (price - opened) / opened * 100 if opened else None,
    }


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


def symbols(db: Database) -> list[dict]:
    return [{"symbol": s, "last": close, "time": t // US} for s, close, t in db.query(q.SYMBOLS)]

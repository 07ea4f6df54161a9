"""Every SQL text the api runs, built once from whitelisted pieces.

Request values (symbol, bounds, limits) are only ever bound parameters
(``%(name)s``, quoted by psycopg2); the only variable parts of the texts are the
names below, chosen from fixed tables by key.

Candles are aligned to the UTC calendar (QuestDB's SAMPLE BY default). Every interval
divides a day, so a bucket starts at ``floor(t / seconds) * seconds``. Candle queries
give the bucket start in epoch seconds (QuestDB divides longs as integers; timestamps
are never negative here), the unit the api answers in.
"""

from __future__ import annotations

from dataclasses import dataclass

from gostream.common.schema import CANDLES_1M_VIEW, HOLES_TABLE, INSTRUMENTS_TABLE, TRADES_TABLE


@dataclass(frozen=True)
class Interval:
    name: str
    seconds: int
    source: str  # "raw": SAMPLE BY over trades; "view": the 1m view; "rollup": SAMPLE BY over the 1m view
    sql: str  # candles (t in epoch s, open, high, low, close, volume) in [lo, hi), newest first, at most `limit`


_RAW = f"""
SELECT cast(timestamp AS long) / 1000000 AS t, open, high, low, close, volume FROM (
    SELECT timestamp, first(price) AS open, max(price) AS high, min(price) AS low,
           last(price) AS close, sum(size) AS volume
    FROM {TRADES_TABLE}
    WHERE symbol = %(symbol)s AND timestamp >= %(lo)s AND timestamp < %(hi)s
    SAMPLE BY {{unit}}
) ORDER BY t DESC LIMIT %(limit)s
"""

_VIEW = f"""
SELECT cast(timestamp AS long) / 1000000 AS t, open, high, low, close, volume FROM {CANDLES_1M_VIEW}
WHERE symbol = %(symbol)s AND timestamp >= %(lo)s AND timestamp < %(hi)s
ORDER BY timestamp DESC LIMIT %(limit)s
"""

_ROLLUP = f"""
SELECT cast(timestamp AS long) / 1000000 AS t, open, high, low, close, volume FROM (
    SELECT timestamp, first(open) AS open, max(high) AS high, min(low) AS low,
           last(close) AS close, sum(volume) AS volume
    FROM {CANDLES_1M_VIEW}
    WHERE symbol = %(symbol)s AND timestamp >= %(lo)s AND timestamp < %(hi)s
    SAMPLE BY {{unit}}
) ORDER BY t DESC LIMIT %(limit)s
"""


def _interval(name: str, seconds: int) -> Interval:
    if seconds < 60:
        return Interval(name, seconds, "raw", _RAW.format(unit=name).strip())
    if seconds == 60:
        return Interval(name, seconds, "view", _VIEW.strip())
    return Interval(name, seconds, "rollup", _ROLLUP.format(unit=name).strip())


INTERVALS: dict[str, Interval] = {
    name: _interval(name, seconds)
    for name, seconds in (
        ("1s", 1), ("5s", 5), ("15s", 15), ("1m", 60), ("5m", 300),
        ("15m", 900), ("30m", 1800), ("1h", 3600), ("4h", 14400), ("1d", 86400),
    )
}

# The same candles straight from the trades, whatever the interval (tests and checks
# compare the view against this).
RAW_CANDLES: dict[str, str] = {name: _RAW.format(unit=name).strip() for name in INTERVALS}

# The time of a symbol's latest trade (microseconds), or no row.
LAST_TRADE_TIME = f"""
SELECT cast(timestamp AS long) AS t, price FROM {TRADES_TABLE}
WHERE symbol = %(symbol)s LATEST ON timestamp PARTITION BY symbol
""".strip()

# Every symbol with its latest 1m close (from the view: 1/1000 of the rows to scan).
SYMBOLS = f"""
SELECT symbol, close, cast(timestamp AS long) AS t FROM {CANDLES_1M_VIEW}
LATEST ON timestamp PARTITION BY symbol ORDER BY symbol
""".strip()

# The same with each symbol's first open and volume since %(since)s (the 1m candles of the
# last 24 h; NULL for a symbol without any): one pass over the view for every symbol.
SYMBOLS_24H = f"""
WITH latest AS (
    SELECT symbol, close, timestamp FROM {CANDLES_1M_VIEW} LATEST ON timestamp PARTITION BY symbol
), day AS (
    SELECT symbol, first(open) AS open, sum(volume) AS volume FROM {CANDLES_1M_VIEW} WHERE timestamp >= %(since)s
)
SELECT latest.symbol, latest.close, cast(latest.timestamp AS long) AS t, day.open, day.volume
FROM latest LEFT JOIN day ON symbol ORDER BY latest.symbol
""".strip()

# Each symbol's first open since %(since)s (for the tickers: refreshed once a minute).
OPENS_SINCE = f"""
SELECT symbol, first(open) AS open FROM {CANDLES_1M_VIEW} WHERE timestamp >= %(since)s
""".strip()

# What the producer stored of each instrument (one row per symbol).
INSTRUMENTS = f"""
SELECT symbol, inst_type, tick_sz, lot_sz, base_ccy, quote_ccy, state FROM {INSTRUMENTS_TABLE}
""".strip()

RECENT_TRADES = f"""
SELECT cast(timestamp AS long) AS t, trade_id, price, size, side FROM {TRADES_TABLE}
WHERE symbol = %(symbol)s ORDER BY timestamp DESC LIMIT %(limit)s
""".strip()

# /stream pages through a symbol's trades on (timestamp, trade_id), a total order: rows
# after the cursor (at, id), oldest first. Paging on the time alone read the same page for
# ever once one millisecond held a page of fills.
_TRADE_COLUMNS = "cast(timestamp AS long) AS t, trade_id, price, size, side, fills"
TRADES_AFTER = f"""
SELECT {_TRADE_COLUMNS} FROM {TRADES_TABLE}
WHERE symbol = %(symbol)s AND timestamp >= %(at)s AND (timestamp > %(at)s OR trade_id > %(id)s)
ORDER BY timestamp, trade_id LIMIT %(limit)s
""".strip()

# The same, up to and including the cursor (to_at, to_id): what a stream starts with or
# resumes from, up to where its feed took over.
TRADES_BETWEEN = f"""
SELECT {_TRADE_COLUMNS} FROM {TRADES_TABLE}
WHERE symbol = %(symbol)s AND timestamp >= %(at)s AND timestamp <= %(to_at)s
  AND (timestamp > %(at)s OR trade_id > %(id)s) AND (timestamp < %(to_at)s OR trade_id <= %(to_id)s)
ORDER BY timestamp, trade_id LIMIT %(limit)s
""".strip()

# The highest id at a symbol's latest time: with LAST_TRADE_TIME, where a new feed starts.
MAX_ID_AT = f"""
SELECT max(trade_id) AS id FROM {TRADES_TABLE} WHERE symbol = %(symbol)s AND timestamp = %(at)s
""".strip()

# Trades that filled a hole (ids first..last between two stored rows' times), for a feed
# watching a hole: rows written late, below its cursor.
HOLE_TRADES = f"""
SELECT {_TRADE_COLUMNS} FROM {TRADES_TABLE}
WHERE symbol = %(symbol)s AND timestamp >= %(lo)s AND timestamp <= %(hi)s
  AND trade_id >= %(first)s AND trade_id <= %(last)s
ORDER BY timestamp, trade_id LIMIT %(limit)s
""".strip()

# Which of some symbols have trades (the 1m view: one row per symbol to read).
HAVE_TRADES = f"""
SELECT symbol FROM {CANDLES_1M_VIEW} WHERE symbol IN %(symbols)s LATEST ON timestamp PARTITION BY symbol
""".strip()

# One candle over [lo, hi) from the trades, and from the 1m view (for [bucket, minute)).
BUCKET_FROM_TRADES = f"""
SELECT first(price) AS open, max(price) AS high, min(price) AS low, last(price) AS close,
       sum(size) AS volume, count() AS n
FROM {TRADES_TABLE} WHERE symbol = %(symbol)s AND timestamp >= %(lo)s AND timestamp < %(hi)s
""".strip()

BUCKET_FROM_VIEW = f"""
SELECT first(open) AS open, max(high) AS high, min(low) AS low, last(close) AS close,
       sum(volume) AS volume, sum(trades) AS n
FROM {CANDLES_1M_VIEW} WHERE symbol = %(symbol)s AND timestamp >= %(lo)s AND timestamp < %(hi)s
""".strip()

# -- /completeness ----------------------------------------------------------------
# A symbol's stored rows in [lo, hi) with the row before each (lag), in an order given by
# {order}: `timestamp` (the table's own order: QuestDB streams the window, no sort) or
# `trade_id` (the definition: QuestDB materialises and sorts the rows, ~4x the cost).
# A row covers ids trade_id - fills + 1 .. trade_id; the ids between the row before and
# the row's first id are a hole (none when they touch or overlap).
_NEIGHBOURS = f"""
SELECT trade_id, fills, timestamp, lag(trade_id) OVER (ORDER BY {{order}}) AS prev_id{{times}}
FROM {TRADES_TABLE} WHERE symbol = %(symbol)s AND timestamp >= %(lo)s AND timestamp < %(hi)s
"""

# One pass: rows, the id range they cover, ids missing inside it, holes, and rows whose id is
# not above the previous row's (`unordered`: 0 means the time order is the id order, so
# the time-ordered pass is exact; otherwise the id-ordered one is run instead).
_COMPLETENESS = """
SELECT count() AS n, min(trade_id - fills + 1) AS first_id, max(trade_id) AS last_id,
       sum(CASE WHEN trade_id - fills > prev_id THEN trade_id - fills - prev_id ELSE 0 END) AS missing,
       sum(CASE WHEN trade_id - fills > prev_id THEN 1 ELSE 0 END) AS holes,
       sum(CASE WHEN trade_id <= prev_id THEN 1 ELSE 0 END) AS unordered
FROM ({neighbours})
"""

# The first holes by id (first id, last id, times of the stored rows before and after, µs).
_HOLES = """
SELECT prev_id + 1 AS first_id, trade_id - fills AS last_id, cast(prev_t AS long) AS after_us,
       cast(timestamp AS long) AS before_us
FROM ({neighbours}) WHERE trade_id - fills > prev_id ORDER BY first_id LIMIT %(limit)s
"""

COMPLETENESS: dict[str, str] = {
    order: _COMPLETENESS.format(neighbours=_NEIGHBOURS.format(order=order, times="").strip()).strip()
    for order in ("timestamp", "trade_id")
}
HOLES: dict[str, str] = {
    order: _HOLES.format(neighbours=_NEIGHBOURS.format(
        order=order, times=f", lag(timestamp) OVER (ORDER BY {order}) AS prev_t").strip()).strip()
    for order in ("timestamp", "trade_id")
}

# The hole ledger (written by the producer's audit; DEDUP keeps the latest row per hole):
# rows of a symbol overlapping an id range, per state, and the rows themselves (newest
# first) for matching holes to their state.
LEDGER_COUNTS = f"""
SELECT state, count() AS n, sum(missing) AS missing FROM {HOLES_TABLE}
WHERE symbol = %(symbol)s AND first_id <= %(last)s AND last_id >= %(first)s
""".strip()

# The open holes of one symbol the producer's audit is filling (for /stream: their trades
# arrive late, below a feed's cursor).
LEDGER_OPEN = f"""
SELECT first_id, last_id, cast(after_time AS long) AS after_us, cast(before_time AS long) AS before_us
FROM {HOLES_TABLE} WHERE symbol = %(symbol)s AND state = 'open' ORDER BY found_at DESC LIMIT %(limit)s
""".strip()

LEDGER_ROWS = f"""
SELECT first_id, last_id, state, attempts FROM {HOLES_TABLE}
WHERE symbol = %(symbol)s AND first_id <= %(last)s AND last_id >= %(first)s
ORDER BY found_at DESC LIMIT %(limit)s
""".strip()

# Readiness: QuestDB answers and the schema the api reads is there.
PING = f"SELECT 1 FROM {CANDLES_1M_VIEW} LIMIT 1"

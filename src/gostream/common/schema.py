"""The QuestDB schema, created idempotently at start-up over QuestDB's HTTP /exec.

One place for every table: the consumer creates them at start-up, the producer's
completeness audit writes the hole ledger, the api reads all of them."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request

TRADES_TABLE = "trades"

# WAL + DEDUP: a trade re-sent after a reconnect, re-read after a crash before a
# commit, or backfilled twice lands on the same key and replaces itself.
# The trade id is part of the key because distinct trades share milliseconds.
CREATE_TRADES = f"""
CREATE TABLE IF NOT EXISTS {TRADES_TABLE} (
    symbol SYMBOL CAPACITY 1024 CACHE,
    inst_type SYMBOL CAPACITY 8 CACHE,
    side SYMBOL CAPACITY 4 CACHE,
    trade_id LONG,
    price DOUBLE,
    size DOUBLE,
    fills INT,
    received_at TIMESTAMP,
    timestamp TIMESTAMP
) TIMESTAMP(timestamp) PARTITION BY DAY WAL
DEDUP UPSERT KEYS(timestamp, symbol, trade_id)
""".strip()

# 1m OHLCV candles, kept up to date by QuestDB itself (refreshed incrementally after each
# commit to `trades`, re-aggregating only the touched buckets, so DEDUP replacements count
# once). The api reads 1m candles here and rolls them up for 5m..1d.
CANDLES_1M_VIEW = "candles_1m"
CREATE_CANDLES_1M = f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {CANDLES_1M_VIEW} AS (
    SELECT timestamp, symbol,
        first(price) AS open, max(price) AS high, min(price) AS low, last(price) AS close,
        sum(size) AS volume, count() AS trades
    FROM {TRADES_TABLE}
    SAMPLE BY 1m
) PARTITION BY DAY
""".strip()

# The completeness ledger: every hole the audit found in a symbol's trade ids, one row per
# hole as first found, re-written whole (DEDUP on the key) whenever its state changes.
# state: open (being filled), closed (the store holds every id), unrecoverable (OKX no
# longer serves the ids; `missing` says how many are gone for good). after_time and
# before_time: exchange times of the stored trades around the hole.
HOLES_TABLE = "trade_holes"
HOLE_STATES = ("open", "closed", "unrecoverable")
CREATE_HOLES = f"""
CREATE TABLE IF NOT EXISTS {HOLES_TABLE} (
    symbol SYMBOL CAPACITY 1024 CACHE,
    first_id LONG,
    last_id LONG,
    missing LONG,
    state SYMBOL CAPACITY 4 CACHE,
    attempts INT,
    detail VARCHAR,
    after_time TIMESTAMP,
    before_time TIMESTAMP,
    updated_at TIMESTAMP,
    next_attempt_at TIMESTAMP,
    closed_at TIMESTAMP,
    found_at TIMESTAMP
) TIMESTAMP(found_at) PARTITION BY MONTH WAL
DEDUP UPSERT KEYS(found_at, symbol, first_id)
""".strip()

# What OKX says of each instrument followed (REST public/instruments), written by the
# producer when a symbol is new or its metadata changed; the api rounds prices to tick_sz
# and sizes to lot_sz. One row per symbol: every row has the same designated timestamp
# (the epoch), so DEDUP on (ts, symbol) replaces a symbol's row. Values as OKX gives them
# (decimal text), NULL where it gives none; sizes of SWAP and FUTURES are in contracts
# (ct_val: one contract's worth in base, linear, or quote, inverse).
INSTRUMENTS_TABLE = "instruments"
CREATE_INSTRUMENTS = f"""
CREATE TABLE IF NOT EXISTS {INSTRUMENTS_TABLE} (
    symbol SYMBOL CAPACITY 4096 CACHE,
    inst_type SYMBOL CAPACITY 8 CACHE,
    tick_sz VARCHAR,
    lot_sz VARCHAR,
    min_sz VARCHAR,
    ct_val VARCHAR,
    base_ccy SYMBOL CAPACITY 4096 CACHE,
    quote_ccy SYMBOL CAPACITY 64 CACHE,
    state SYMBOL CAPACITY 8 CACHE,
    updated_at TIMESTAMP,
    ts TIMESTAMP
) TIMESTAMP(ts) PARTITION BY YEAR WAL
DEDUP UPSERT KEYS(ts, symbol)
""".strip()

# What tables made by an earlier version lack.
UPGRADES: tuple[str, ...] = (
    # SPOT, SWAP, FUTURES: derivative sizes are in contracts, as OKX sends them.
    f"ALTER TABLE {TRADES_TABLE} ADD COLUMN IF NOT EXISTS inst_type SYMBOL CAPACITY 8 CACHE",
)

STATEMENTS: tuple[str, ...] = (CREATE_TRADES, *UPGRADES, CREATE_CANDLES_1M, CREATE_HOLES, CREATE_INSTRUMENTS)


class SchemaError(RuntimeError):
    pass


# TTL units QuestDB takes; both tables it applies to are partitioned by day, and QuestDB
# drops whole partitions, so an hour count must make whole days.
_TTL_UNITS = {"h": "HOURS", "d": "DAYS", "w": "WEEKS", "M": "MONTHS", "y": "YEARS"}
_TTL = re.compile(r"^([0-9]{1,6})([hdwMy])?$")


def ttl_clause(text: str) -> str:
    """'90d' -> '90 DAYS' (h, d, w, M, y); '0' -> '0 HOURS' (keep everything). ValueError says why."""
    found = _TTL.match(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a TTL like 90d, 12w, 6M, 2y or 0 (keep everything)")
    count, unit = int(found.group(1)), found.group(2)
    if count == 0:
        return "0 HOURS"  # QuestDB wants a unit even here
    if unit is None:
        raise ValueError(f"{text!r} lacks its unit (h, d, w, M or y)")
    if unit == "h" and count % 24:
        raise ValueError(f"{text!r}: the tables are partitioned by day, so hours must make whole days")
    return f"{count} {_TTL_UNITS[unit]}"


def _without_credentials(base_url: str) -> tuple[str, dict[str, str]]:
    """The URL without its user:password@ and the basic auth header carrying them."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.username is None:
        return base_url, {}
    pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl(), {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def execute(base_url: str, sql: str, timeout_s: float = 10.0) -> dict:
    """Run one statement through /exec; raise SchemaError with QuestDB's message."""
    url, headers = _without_credentials(base_url)
    request = urllib.request.Request(f"{url.rstrip('/')}/exec?" + urllib.parse.urlencode({"query": sql}),
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            message = json.loads(body).get("error", body)
        except ValueError:
            message = body
        raise SchemaError(f"QuestDB refused {sql.split('(')[0].strip()!r}: {message}") from None


def query(base_url: str, sql: str, timeout_s: float = 30.0) -> list[dict]:
    """The rows of one statement through /exec, as dicts (no rows for DDL and INSERT)."""
    body = execute(base_url, sql, timeout_s)
    names = [column["name"] for column in body.get("columns", ())]
    return [dict(zip(names, row)) for row in body.get("dataset", ())]


def ensure_schema(base_url: str, trades_ttl: str | None = None, candles_ttl: str | None = None) -> None:
    """Create what is missing; with a TTL (see ttl_clause), also set it on the trades table
    or the candle view, existing ones included (None leaves it as it is: only the consumer
    sets them, so two services never disagree)."""
    for sql in STATEMENTS:
        execute(base_url, sql)
    if trades_ttl is not None:
        execute(base_url, f"ALTER TABLE {TRADES_TABLE} SET TTL {ttl_clause(trades_ttl)}")
    if candles_ttl is not None:
        execute(base_url, f"ALTER MATERIALIZED VIEW {CANDLES_1M_VIEW} SET TTL {ttl_clause(candles_ttl)}")

"""P10: what a trade costs on disk, for sizing QuestDB's volume (README, Sizing).

A table made LIKE `trades` (same columns, WAL, DEDUP keys) and a 1m candle view over it made
as `candles_1m` is. `days` days of `per_day` trades of one busy symbol (prices and sizes spread
like a real book, ids consecutive, timestamps over each whole day) are written; once QuestDB
has applied them, table_partitions() gives each day's partition's bytes. A closed day (not the
newest) is the steady cost per trade; the newest, open one carries what QuestDB maps ahead
for appends, a fixed cost per table whatever the rows.
"""

from __future__ import annotations

import time

from bench.common import PORTS, sql, wal_pending
from gostream.common.schema import CANDLES_1M_VIEW, CREATE_CANDLES_1M, TRADES_TABLE, ensure_schema

TABLE = "sizing_trades"
VIEW = "sizing_candles_1m"
DAY_US = 86_400_000_000
FIRST_DAY_US = 1_704_067_200_000_000  # 2024-01-01, far from any other benchmark's rows


def _partitions(table: str) -> list[dict]:
    return sql(f"select name, numRows, diskSize, active from table_partitions('{table}') order by name")


def _applied(expected_rows: int, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = sum(p["numRows"] for p in _partitions(TABLE))
        if rows == expected_rows and not wal_pending(TABLE) and not wal_pending(VIEW):
            return
        time.sleep(1)
    raise RuntimeError(f"{TABLE} did not reach {expected_rows} applied rows within {timeout_s:.0f} s")


def run(per_day: int = 1_000_000, days: int = 3) -> dict:
    ensure_schema(f"http://127.0.0.1:{PORTS.questdb_http}")  # the `trades` the table is made like
    sql(f"DROP MATERIALIZED VIEW IF EXISTS {VIEW}")
    sql(f"DROP TABLE IF EXISTS {TABLE}")
    sql(f"CREATE TABLE {TABLE} (LIKE {TRADES_TABLE})")
    sql(CREATE_CANDLES_1M.replace(f"VIEW IF NOT EXISTS {CANDLES_1M_VIEW} ", f"VIEW IF NOT EXISTS {VIEW} ")
        .replace(f"FROM {TRADES_TABLE}\n", f"FROM {TABLE}\n"))
    step_us = DAY_US // per_day
    sql(f"""INSERT INTO {TABLE} (symbol, inst_type, side, trade_id, price, size, fills, received_at, timestamp)
            SELECT 'BTC-USDT', 'SPOT', rnd_symbol('buy','sell'), x,
                   round(30000 + rnd_double() * 500, 1), round(rnd_double() * rnd_double(), 8),
                   rnd_int(1, 3, 0), timestamp_sequence({FIRST_DAY_US + 80_000}, {step_us}),
                   timestamp_sequence({FIRST_DAY_US}, {step_us})
            FROM long_sequence({per_day * days})""", timeout_s=900)
    _applied(per_day * days)
    trades, candles = _partitions(TABLE), _partitions(VIEW)
    closed = [p for p in trades if not p["active"]]
    bytes_per_trade = sum(p["diskSize"] for p in closed) / sum(p["numRows"] for p in closed)
    (open_day,) = [p for p in trades if p["active"]]
    closed_candles = [p for p in candles if not p["active"]]
    candles_per_day = sum(p["diskSize"] for p in closed_candles) / len(closed_candles)
    storage = {r["tableName"]: r["diskSize"] for r in sql(
        f"select tableName, diskSize from table_storage() where tableName in ('{TABLE}', '{VIEW}')")}
    result = {
        "per_day": per_day, "days": days, "partitions": {"trades": trades, "candles_1m": candles},
        "bytes_per_trade": round(bytes_per_trade, 1),
        "open_partition_overhead_mb": round((open_day["diskSize"] - open_day["numRows"] * bytes_per_trade) / 1e6, 1),
        "candles_bytes_per_symbol_day": round(candles_per_day),
        "table_storage_bytes": storage,
        "mb_per_day_at": {str(n): round((bytes_per_trade * n + candles_per_day) / 1e6, 1)
                          for n in (100_000, 550_000, 2_000_000)},
    }
    sql(f"DROP MATERIALIZED VIEW IF EXISTS {VIEW}")
    sql(f"DROP TABLE IF EXISTS {TABLE}")
    return result

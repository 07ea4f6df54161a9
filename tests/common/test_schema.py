"""The DDL against a real QuestDB."""

import pytest

from gostream.common.schema import UPGRADES, SchemaError, ensure_schema, execute, ttl_clause
from tests.conftest import TEST_PORTS, sql, wait_for

URL = f"http://127.0.0.1:{TEST_PORTS.questdb_http}"


def test_trades_table_is_wal_partitioned_by_day_with_dedup(questdb):
    ensure_schema(URL)
    ensure_schema(URL)  # idempotent: a restart must not fail or change anything
    (table,) = sql("select * from tables() where table_name = 'trades'")
    assert table["designatedTimestamp"] == "timestamp"
    assert table["partitionBy"] == "DAY"
    assert table["walEnabled"] is True
    assert table["dedup"] is True
    columns = {row["column"]: row for row in sql("select * from table_columns('trades')")}
    assert {name: col["type"] for name, col in columns.items()} == {
        "symbol": "SYMBOL", "inst_type": "SYMBOL", "side": "SYMBOL", "trade_id": "LONG", "price": "DOUBLE", "size": "DOUBLE",
        "fills": "INT", "received_at": "TIMESTAMP", "timestamp": "TIMESTAMP",
    }
    assert {name for name, col in columns.items() if col["upsertKey"]} == {"timestamp", "symbol", "trade_id"}


def test_a_table_of_an_earlier_version_gains_the_instrument_type(questdb):
    execute(URL, "CREATE TABLE IF NOT EXISTS old_trades (symbol SYMBOL, trade_id LONG, timestamp TIMESTAMP) "
                 "TIMESTAMP(timestamp) PARTITION BY DAY WAL")
    for statement in UPGRADES:
        execute(URL, statement.replace("TABLE trades ", "TABLE old_trades "))
        execute(URL, statement.replace("TABLE trades ", "TABLE old_trades "))  # idempotent
    # ALTER on a WAL table is applied with the WAL, a moment later.
    wait_for(lambda: "inst_type" in {row["column"] for row in sql("select * from table_columns('old_trades')")},
             message="the column added")


def test_questdb_errors_carry_its_message(questdb):
    with pytest.raises(SchemaError, match="no_such_table"):
        execute(URL, "ALTER TABLE no_such_table ADD COLUMN x INT")


@pytest.mark.parametrize("text, clause", [("90d", "90 DAYS"), ("48h", "48 HOURS"), ("12w", "12 WEEKS"),
                                          ("6M", "6 MONTHS"), ("2y", "2 YEARS"), ("0", "0 HOURS"), (" 7d ", "7 DAYS")])
def test_ttl_texts(text, clause):
    assert ttl_clause(text) == clause


@pytest.mark.parametrize("text", ["", "d", "90", "36h", "-1d", "1.5d", "90 days", "1m", "7D", "9999999d"])
def test_ttl_texts_refused_say_why(text):
    with pytest.raises(ValueError, match="TTL|unit|whole days"):
        ttl_clause(text)


HOURS_PER = {"HOUR": 1, "DAY": 24, "WEEK": 24 * 7}


def _ttl_hours(name: str) -> int:
    """The table's TTL in hours as QuestDB reports it (it may say 7 days as 1 week)."""
    (row,) = sql(f"select ttlValue, ttlUnit from tables() where table_name = '{name}'")
    return row["ttlValue"] * HOURS_PER.get((row["ttlUnit"] or "HOUR").rstrip("S"), 0)


def test_retention_is_set_on_existing_tables_and_drops_old_partitions(questdb):
    ensure_schema(URL)
    execute(URL, "INSERT INTO trades (symbol, trade_id, price, size, side, timestamp) VALUES "
                 "('TTL-USDT', 1, 1.0, 1.0, 'buy', dateadd('d', -10, now()))")
    wait_for(lambda: sql("select count() n from trades where symbol = 'TTL-USDT'")[0]["n"] == 1,
             message="the old trade stored")
    ensure_schema(URL, trades_ttl="7d", candles_ttl="30d")
    wait_for(lambda: _ttl_hours("trades") == 7 * 24, message="the trades TTL of 7 days set")
    wait_for(lambda: _ttl_hours("candles_1m") == 30 * 24, message="the candle view's TTL of 30 days set")
    # QuestDB drops partitions past the TTL as it commits newer rows.
    execute(URL, "INSERT INTO trades (symbol, trade_id, price, size, side, timestamp) VALUES "
                 "('TTL-USDT', 2, 1.0, 1.0, 'buy', now())")
    wait_for(lambda: [r["trade_id"] for r in sql("select trade_id from trades where symbol = 'TTL-USDT'")] == [2],
             message="the trade older than the TTL dropped, the new one kept")
    ensure_schema(URL, trades_ttl="0", candles_ttl="0")  # 0: keep everything again
    wait_for(lambda: _ttl_hours("trades") == 0 and _ttl_hours("candles_1m") == 0, message="the TTLs cleared")
    ensure_schema(URL)  # no TTL given (the producer): left as it is

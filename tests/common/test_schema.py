"""The DDL against a real QuestDB."""

import pytest

from gostream.common.schema import UPGRADES, SchemaError, ensure_schema, execute
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

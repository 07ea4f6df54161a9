"""QuestDB's disk use as the consumer's metrics: what table_storage() says, checked against
the bytes the test counts on disk itself, the rows QuestDB counts, and a table that goes."""

import os
import threading
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from prometheus_client import REGISTRY

from gostream.common.schema import execute
from gostream.common.trade import encode
from gostream.consumer import storage
from gostream.consumer.storage import StorageWatch, table_sizes, volume_bytes
from tests.common.test_trade_properties import json_values
from tests.conftest import TEST_PORTS, metric, produce, spare_port, sql, unique, wait_for
from tests.consumer.test_ingest import trades

QUESTDB = f"http://127.0.0.1:{TEST_PORTS.questdb_http}"


def disk_bytes(directory: Path) -> int:
    """What `du --apparent-size` counts of the files under the directory (QuestDB allocates
    them whole, so it is what they take on disk to within a block each)."""
    return sum(os.lstat(Path(root) / name).st_size for root, _, names in os.walk(directory) for name in names)


def table_dir(stack_dir: Path, table: str) -> Path:
    (row,) = sql(f"select directoryName from tables() where table_name = '{table}'")
    return stack_dir / "questdb" / "db" / row["directoryName"]


def gauge(name: str, table: str) -> float:
    return metric(TEST_PORTS.consumer, name, f'table="{table}"')


def test_disk_use_rows_and_volume_match_what_is_on_disk(topic, services, stack_dir):
    symbol = unique("D") + "-USDT"
    produce(topic, [(t.symbol.encode(), encode(t)) for t in trades(symbol, 2_000)])
    services.start("consumer", topic, QUESTDB_STORAGE_POLL_S="0.5", QUESTDB_VOLUME_SIZE="3Gi")
    wait_for(lambda: sql(f"select count() n from trades where symbol = '{symbol}'")[0]["n"] == 2_000,
             message="the trades in QuestDB")

    assert metric(TEST_PORTS.consumer, "gostream_consumer_questdb_volume_bytes") == 3 * 2**30
    # Sizes move while QuestDB applies WAL segments: poll until the consumer's figures and the
    # test's own count agree (both settle once nothing more is written).
    trades_dir = table_dir(stack_dir, "trades")
    wait_for(lambda: gauge("gostream_consumer_questdb_table_disk_bytes", "trades") == disk_bytes(trades_dir) > 0,
             timeout_s=60, message=f"the trades table's bytes == what {trades_dir} holds")
    wait_for(lambda: gauge("gostream_consumer_questdb_table_rows", "trades")
             == sql("select count() n from trades")[0]["n"], timeout_s=60, message="the rows QuestDB counts")
    assert gauge("gostream_consumer_questdb_table_disk_bytes", "candles_1m") > 0

    # A table dropped leaves the metrics (a disk that shrinks must show it).
    scratch = unique("scratch_")
    execute(QUESTDB, f"create table {scratch} as (select x, timestamp_sequence(0, 1000000) ts from long_sequence(10)) "
        "timestamp(ts) partition by day")
    wait_for(lambda: gauge("gostream_consumer_questdb_table_rows", scratch) == 10, message=f"{scratch} reported")
    execute(QUESTDB, f"drop table {scratch}")
    wait_for(lambda: f'table="{scratch}"' not in metrics_text(), message=f"{scratch} gone from the metrics")


def metrics_text() -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{TEST_PORTS.consumer}/metrics", timeout=5) as response:
        return response.read().decode()


def test_a_failed_poll_keeps_the_last_figures_and_is_counted():
    def errors() -> float:
        return REGISTRY.get_sample_value("gostream_consumer_questdb_storage_errors_total") or 0.0

    storage.TABLE_DISK.labels("kept").set(123)
    before = errors()
    # Nothing listens there: the query fails with a connection error, and poll() says so
    # only through the log and the counter.
    StorageWatch(f"http://127.0.0.1:{spare_port()}", 0, 60, threading.Event()).poll()
    assert errors() == before + 1
    assert REGISTRY.get_sample_value("gostream_consumer_questdb_table_disk_bytes", {"table": "kept"}) == 123
    storage.TABLE_DISK.remove("kept")


@pytest.mark.parametrize("text, expected", [
    ("", 0), ("10Gi", 10 * 2**30), ("500Mi", 500 * 2**20), ("2Ti", 2 * 2**40), ("100G", 10**11),
    ("1048576", 2**20), (" 64Ki ", 64 * 1024),
])
def test_volume_sizes_are_read_as_kubernetes_writes_them(text, expected):
    assert volume_bytes(text) == expected


@pytest.mark.parametrize("text", ["10GB", "-1Gi", "1.5Gi", "ten", "10 Gi", "10gi", "1e9"])
def test_a_size_that_is_not_one_is_refused_with_the_reason(text):
    with pytest.raises(ValueError, match="is not a size like 10Gi"):
        volume_bytes(text)


storage_rows = st.lists(st.fixed_dictionaries(
    {"tableName": st.text(max_size=12) | json_values, "rowCount": st.integers() | json_values,
     "diskSize": st.integers() | json_values}), max_size=6)


@given(st.one_of(json_values, storage_rows))
def test_table_storage_rows_of_any_shape_never_raise_and_keep_only_whole_figures(rows):
    sizes = table_sizes(rows)
    for table, (count, size) in sizes.items():
        assert isinstance(table, str) and table
        assert type(count) is int and type(size) is int and count >= 0 and size >= 0
    expected = {r["tableName"] for r in rows if isinstance(r, dict) and isinstance(r.get("tableName"), str)
                and r["tableName"] and all(type(r.get(k)) is int and r[k] >= 0 for k in ("rowCount", "diskSize"))} \
        if isinstance(rows, list) else set()
    assert set(sizes) == expected

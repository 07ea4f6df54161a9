"""What OKX says of the followed instruments reaches QuestDB's `instruments` table: a real
producer, the simulated exchange's catalogue, a real QuestDB and Kafka."""

from tests.conftest import TEST_PORTS, metric, read_topic, spare_port, sql, unique, wait_for
from tests.okxsim import generate
from tests.pipeline.test_ingest import producer_env

WRITTEN = "gostream_producer_instruments_written_total"
COLUMNS = "symbol, inst_type, tick_sz, lot_sz, min_sz, ct_val, base_ccy, quote_ccy, state, updated_at"


def stored(symbols: list[str]) -> dict[str, dict]:
    names = ",".join(f"'{s}'" for s in symbols)
    return {row["symbol"]: row for row in sql(f"SELECT {COLUMNS} FROM instruments WHERE symbol IN ({names})")}


def test_metadata_is_stored_once_and_again_when_it_changes(exchange, topic, services):
    spot, swap, other = unique("META") + "-USDT", unique("META") + "-USDT-SWAP", unique("OTHER") + "-USDT"
    exchange.list_instrument(spot, tickSz="0.01", lotSz="0.0001", minSz="0.001")
    exchange.list_instrument(swap, "SWAP", tickSz="0.001", lotSz="1", minSz="1", ctVal="10")
    exchange.list_instrument(other)  # listed, not followed: not stored
    env = producer_env(exchange, f"{spot},{swap}", INSTRUMENTS_REFRESH_S="0.5")
    producer = services.start("producer", topic, **env)

    rows = wait_for(lambda: len(got := stored([spot, swap, other])) == 2 and got, message="both instruments stored")
    assert {k: v for k, v in rows[spot].items() if k != "updated_at"} == {
        "symbol": spot, "inst_type": "SPOT", "tick_sz": "0.01", "lot_sz": "0.0001", "min_sz": "0.001", "ct_val": None,
        "base_ccy": spot.split("-")[0], "quote_ccy": "USDT", "state": "live"}
    assert {k: v for k, v in rows[swap].items() if k != "updated_at"} == {
        "symbol": swap, "inst_type": "SWAP", "tick_sz": "0.001", "lot_sz": "1", "min_sz": "1", "ct_val": "10",
        "base_ccy": swap.split("-")[0], "quote_ccy": "USDT", "state": "live"}

    # Refreshes read the list again (one request per instrument type) and write nothing.
    requests = exchange.instrument_requests
    wait_for(lambda: exchange.instrument_requests >= requests + 6, message="three more refreshes")
    assert stored([spot, swap]) == rows and metric(TEST_PORTS.producer, WRITTEN) == 2

    # OKX changes a tick size: that row, and only that one, is written again.
    exchange.list_instrument(spot, tickSz="0.1")
    wait_for(lambda: stored([spot])[spot]["tick_sz"] == "0.1", message="the new tick size stored")
    now = stored([spot, swap])
    assert now[swap] == rows[swap] and now[spot]["updated_at"] > rows[spot]["updated_at"]
    assert metric(TEST_PORTS.producer, WRITTEN) == 3

    # A restart finds the table up to date: nothing written.
    producer.stop()
    requests = exchange.instrument_requests
    services.start("producer", topic, **env)
    wait_for(lambda: exchange.instrument_requests >= requests + 6, message="refreshes after the restart")
    assert metric(TEST_PORTS.producer, WRITTEN) == 0 and stored([spot, swap]) == now


def test_without_questdb_the_feed_flows_and_the_metadata_write_is_retried(exchange, topic, services):
    symbol = unique("NOQDB") + "-USDT"
    exchange.list_instrument(symbol)
    dead = spare_port()  # nothing listens there
    services.start("producer", topic, **producer_env(exchange, symbol, INSTRUMENTS_REFRESH_S="0.5",
                                                     QUESTDB_HTTP_PORT=str(dead)), wait=False)
    wait_for(lambda: exchange.subscribed(symbol), timeout_s=60, message="subscribed without QuestDB")
    trades = generate(symbol, 5)
    exchange.emit(trades)
    wait_for(lambda: len(read_topic(topic)) >= 1, message="trades published to Kafka")
    wait_for(lambda: metric(TEST_PORTS.producer, "gostream_producer_instrument_write_errors_total") >= 3,
             message="the metadata write failing, and retried with each refresh")


def test_instruments_followed_by_pattern_are_stored_and_a_new_listing_too(exchange, topic, services):
    prefix = unique("PAT")
    live, suspended, later = f"{prefix}A-USDT", f"{prefix}B-USDT", f"{prefix}C-USDT"
    exchange.list_instrument(live, tickSz="0.0001", lotSz="0.01")
    exchange.list_instrument(suspended, state="suspend")
    services.start("producer", topic, **producer_env(exchange, f"{prefix}*-USDT", INSTRUMENTS_REFRESH_S="0.5"))
    wait_for(lambda: live in stored([live]), message="the live instrument stored")
    assert stored([live])[live]["tick_sz"] == "0.0001" and suspended not in stored([suspended])
    exchange.list_instrument(later, tickSz="0.5")
    wait_for(lambda: later in stored([later]), message="the new listing stored")
    assert stored([later])[later]["tick_sz"] == "0.5" and metric(TEST_PORTS.producer, WRITTEN) == 2

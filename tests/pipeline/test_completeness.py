"""End to end, the completeness promise: whatever the exchange or its REST does, the store
ends up holding every trade printed, or the ledger says exactly which ids OKX no longer
serves. Real producer, consumer, Kafka and QuestDB; the simulated exchange misbehaves."""

import time

from kafka import KafkaAdminClient, TopicPartition

from tests.conftest import TEST_PORTS, get_json, metric, read_topic, sql, unique, wait_for
from tests.okxsim import generate
from tests.pipeline.test_ingest import count, expected_rows, producer_env, stored

# The audit at test speed: every second, holes count once their upper trade is 1 s old.
FAST_AUDIT = {"AUDIT_INTERVAL_S": "1", "AUDIT_SETTLE_S": "1", "HOLE_RETRY_MIN_S": "1", "HOLE_RETRY_MAX_S": "3",
              "HOLE_GONE_MIN_AGE_S": "0"}
PRODUCER = TEST_PORTS.producer


def ledger(symbol: str) -> list[dict]:
    return sql(f"select first_id, last_id, missing, state, attempts from trade_holes where symbol = '{symbol}' "
               f"order by first_id")


def readyz_problems() -> list[str]:
    status, body = get_json(f"http://127.0.0.1:{PRODUCER}/readyz")
    return body.get("problems", []) if status != 200 else []


def test_a_gap_rest_cannot_fill_while_down_is_healed_by_the_audit(exchange, topic, services):
    symbol = unique("HEAL") + "-USDT"
    trades = generate(symbol, 600)
    services.start("consumer", topic)
    services.start("producer", topic, **producer_env(exchange, symbol, **FAST_AUDIT))
    exchange.emit(trades[:100])
    wait_for(lambda: count(symbol) == 100, message="the first 100 trades")

    exchange.rest_outage(25)  # longer than a live fill keeps trying (5 requests over 15 s)
    exchange.hide(symbol, int(trades[100]["tradeId"]), int(trades[349]["tradeId"]))
    exchange.emit(trades[100:])  # 250 of them never pushed: a gap REST cannot fill now
    wait_for(lambda: [r["state"] for r in ledger(symbol)] == ["open"], timeout_s=60,
             message="the hole in the ledger while REST is down")
    assert metric(PRODUCER, "gostream_trades_missing", f'symbol="{symbol}"') == 250

    wait_for(lambda: count(symbol) == 600, timeout_s=120, message="every trade, the hole filled after the outage")
    assert stored(symbol) == expected_rows(trades)
    wait_for(lambda: [(r["state"], r["missing"]) for r in ledger(symbol)] == [("closed", 0)], timeout_s=30,
             message="the hole closed in the ledger")
    wait_for(lambda: metric(PRODUCER, "gostream_trades_missing", f'symbol="{symbol}"') == 0, message="0 missing")
    assert metric(PRODUCER, "gostream_producer_backfill_errors_total") == 1  # the live fill gave up


def test_history_lagging_behind_the_feed_is_completed_later(exchange, topic, services):
    symbol = unique("LAG") + "-USDT"
    trades = generate(symbol, 400, start_ms=int(time.time() * 1000))
    services.start("consumer", topic)
    # Every trade here is seconds old, so a lagging history serves nothing at all: that
    # must read as "not yet", as it does for holes younger than HOLE_GONE_MIN_AGE_S.
    services.start("producer", topic, **producer_env(exchange, symbol, **{**FAST_AUDIT, "HOLE_GONE_MIN_AGE_S": "600"}))
    exchange.emit(trades[:100])
    wait_for(lambda: count(symbol) == 100, message="the first 100 trades")
    exchange.rest_lag_s = 8  # what the WebSocket just showed is not in history-trades yet
    exchange.hide(symbol, int(trades[100]["tradeId"]), int(trades[199]["tradeId"]))
    exchange.emit(trades[100:])
    wait_for(lambda: count(symbol) == 400, timeout_s=90, message="every trade once history caught up")
    assert stored(symbol) == expected_rows(trades)
    wait_for(lambda: metric(PRODUCER, "gostream_trades_missing", f'symbol="{symbol}"') == 0, message="0 missing")


def test_ids_beyond_okx_history_are_marked_unrecoverable_with_their_count(exchange, topic, services):
    symbol = unique("GONE") + "-USDT"
    trades = generate(symbol, 500)
    services.start("consumer", topic)
    services.start("producer", topic, **producer_env(exchange, symbol, **FAST_AUDIT))
    exchange.emit(trades[:100])
    wait_for(lambda: count(symbol) == 100, message="the first 100 trades")
    exchange.history_reach = 200  # only the newest 200 ids are served: 301..500 of what follows
    exchange.hide(symbol, int(trades[100]["tradeId"]), int(trades[149]["tradeId"]))
    exchange.emit(trades[100:])
    wait_for(lambda: [(r["state"], r["missing"]) for r in ledger(symbol)] == [("unrecoverable", 50)], timeout_s=60,
             message="the hole marked unrecoverable")
    assert count(symbol) == 450
    wait_for(lambda: metric(PRODUCER, "gostream_trades_unrecoverable", f'symbol="{symbol}"') == 50,
             message="50 unrecoverable in the metrics")
    assert metric(PRODUCER, "gostream_trades_missing", f'symbol="{symbol}"') == 0
    attempts = ledger(symbol)[0]["attempts"]
    rest = exchange.rest_requests
    wait_for(lambda: metric(PRODUCER, "gostream_producer_audit_passes_total") >= 5, message="more audit passes")
    assert ledger(symbol)[0]["attempts"] == attempts and exchange.rest_requests == rest  # not retried


def test_a_quiet_symbol_resumes_from_the_store_even_with_the_topic_emptied(exchange, topic, services):
    """The producer restarts after the topic lost every record (retention passed, here by
    deleting them): it resumes from the store, and what the quiet symbol printed while it
    was down comes back over REST."""
    quiet, busy = unique("QUIET") + "-USDT", unique("BUSY") + "-USDT"
    quiet_trades, busy_trades = generate(quiet, 300), generate(busy, 3000, first_id=5_000_000)
    services.start("consumer", topic)
    env = producer_env(exchange, f"{quiet},{busy}", **FAST_AUDIT)
    producer = services.start("producer", topic, **env)
    exchange.emit(quiet_trades[:10])
    exchange.emit(busy_trades)
    wait_for(lambda: count(quiet) == 10 and count(busy) == 3000, message="both symbols stored")
    producer.stop()

    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{TEST_PORTS.kafka}")
    try:
        # -1: up to the high watermark, i.e. everything
        admin.delete_records({TopicPartition(topic, p): -1 for p in range(3)})
    finally:
        admin.close()
    assert read_topic(topic) == []
    exchange.emit(quiet_trades[10:])  # while the producer is down; only the latest is re-sent
    services.start("producer", topic, **env)
    wait_for(lambda: count(quiet) == 300, timeout_s=60, message="the quiet symbol's missed trades backfilled")
    assert stored(quiet) == expected_rows(quiet_trades)


def test_ids_far_below_the_store_are_taken_and_reported(exchange, topic, services):
    symbol = unique("REG") + "-USDT"
    services.start("consumer", topic)
    env = producer_env(exchange, symbol, **FAST_AUDIT)
    producer = services.start("producer", topic, **env)
    high = generate(symbol, 50, first_id=90_000_000)
    exchange.emit(high)
    wait_for(lambda: count(symbol) == 50, message="the first feed's trades")
    producer.stop()

    low = generate(symbol, 200, first_id=1_000, start_ms=int(high[-1]["ts"]) + 1000)  # another exchange's ids
    with type(exchange)(port=0) as other:
        services.start("producer", topic, **producer_env(other, symbol, **FAST_AUDIT))
        wait_for(lambda: other.subscribed(symbol), message="subscribed to the other exchange")
        other.emit(low)
        wait_for(lambda: count(symbol) == 250, message="every trade of the lower feed stored, none skipped")
        assert metric(PRODUCER, "gostream_producer_id_regressions_total", f'symbol="{symbol}"') == 1
        assert any("went back from 90000049 to 1000" in p for p in readyz_problems())
        # The ids between the feeds are no trades to fetch: in time order the store has no hole.
        passes = metric(PRODUCER, "gostream_producer_audit_passes_total")
        wait_for(lambda: metric(PRODUCER, "gostream_producer_audit_passes_total") >= passes + 3,
                 message="audit passes over both feeds")
        assert ledger(symbol) == [] and other.rest_requests == 0


def test_a_bad_price_is_a_rejected_item_not_a_stopped_producer(exchange, topic, services):
    symbol = unique("DOT") + "-USDT"
    trades = generate(symbol, 20)
    services.start("consumer", topic)
    producer = services.start("producer", topic, **producer_env(exchange, symbol, **FAST_AUDIT))
    exchange.emit(trades[:10])
    bad = {**trades[10], "px": "."}
    exchange.emit_items(symbol, [bad, trades[10], {"instId": symbol, "tradeId": "x"}])
    exchange.emit(trades[11:])
    wait_for(lambda: count(symbol) == 20, message="every valid trade, around the bad items")
    assert producer.popen.poll() is None
    assert metric(PRODUCER, "gostream_producer_frames_rejected_total", 'reason="bad-price"') == 1
    assert stored(symbol) == expected_rows(trades)

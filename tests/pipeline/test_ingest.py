"""End to end: simulated OKX -> producer -> Kafka -> consumer -> QuestDB, all real processes.

Expected rows are computed here from the exchange's own wire messages, independently of
the code under test.
"""

import json
import time
import urllib.error
import urllib.request

import pytest

from gostream.common.trade import decode
from tests.conftest import TEST_PORTS, metric, read_topic, sql, unique, wait_for
from tests.okxsim import aggregate, generate, load_recording

FAST_RECONNECT = {"RECONNECT_INITIAL_DELAY_S": "0.1", "RECONNECT_MIN_DELAY_S": "0.2", "RECONNECT_MAX_DELAY_S": "1"}


def producer_env(exchange, symbols: str, channel: str = "trades-all", **extra) -> dict:
    return {
        "OKX_WS_URL": exchange.ws_url(channel),
        "OKX_REST_URL": exchange.rest_url,
        "OKX_CHANNEL": channel,
        "SYMBOLS": symbols,
        **FAST_RECONNECT,
        **extra,
    }


def expected_rows(okx_items: list[dict]) -> list[dict]:
    def iso(ms: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}000Z"

    rows = [
        {"trade_id": int(t["tradeId"]), "price": float(t["px"]), "size": float(t["sz"]), "side": t["side"],
         "fills": int(t.get("count", "1")), "timestamp": iso(int(t["ts"]))}
        for t in okx_items
    ]
    return sorted(rows, key=lambda r: r["trade_id"])


def stored(symbol: str) -> list[dict]:
    return sql(f"select trade_id, price, size, side, fills, timestamp from trades where symbol = '{symbol}' "
               f"order by trade_id")


def count(symbol: str) -> int:
    return sql(f"select count() n from trades where symbol = '{symbol}'")[0]["n"]


def test_every_trade_lands_exactly_once_across_reconnects(exchange, topic, services):
    symbol = unique("P") + "-USDT"
    recorded = [{**t, "instId": symbol} for t in load_recording()]
    later = generate(symbol, 500, first_id=int(recorded[-1]["tradeId"]) + 1, start_ms=int(recorded[-1]["ts"]) + 1)
    services.start("consumer", topic)
    producer = services.start("producer", topic, **producer_env(exchange, symbol))

    exchange.emit(recorded)
    wait_for(lambda: count(symbol) == 69, message="the 69 recorded trades")

    # A dropped connection: the producer reconnects, resubscribes, and OKX re-sends
    # the latest trade, which must not become a second row.
    exchange.drop_connections()
    wait_for(lambda: exchange.connections == 2 and exchange.subscribed(symbol) == 1, message="resubscribed")
    exchange.emit(later[:250])

    # The service-upgrade notice: the producer leaves and comes back by itself.
    exchange.notice_upgrade()
    wait_for(lambda: exchange.connections == 3 and exchange.subscribed(symbol) == 1, message="resubscribed")
    exchange.emit(later[250:])

    wait_for(lambda: count(symbol) == 569, message="all 569 trades")
    assert stored(symbol) == expected_rows(recorded + later)
    # The trade re-sent after each of the two reconnects is recognised and not counted.
    port = TEST_PORTS.producer
    wait_for(lambda: metric(port, "gostream_producer_duplicate_trades_total") == 2, message="2 repeats seen")
    assert metric(port, "gostream_producer_trades_received_total") == 569
    assert metric(port, "gostream_producer_ws_reconnects_total") == 2
    assert metric(port, "gostream_producer_gaps_detected_total") == 0
    assert producer.alive()


def test_aggregated_trades_channel_keeps_fill_counts(exchange, topic, services):
    symbol = unique("A") + "-USDT"
    fills = generate(symbol, 400, step_ms=2, seed=7)
    # Force runs of fills at one price, side and millisecond, as one taker order makes.
    for i in range(0, 400, 5):
        for j in range(i + 1, min(i + 4, 400)):
            fills[j] = {**fills[j], "px": fills[i]["px"], "side": fills[i]["side"], "ts": fills[i]["ts"]}
    pushes = aggregate(fills)
    assert len(pushes) < 200  # the test data really aggregates

    services.start("consumer", topic)
    services.start("producer", topic, **producer_env(exchange, symbol, channel="trades"))
    exchange.emit(fills)
    wait_for(lambda: count(symbol) == len(pushes), message=f"{len(pushes)} aggregated trades")
    assert stored(symbol) == expected_rows(pushes)
    assert sum(r["fills"] for r in stored(symbol)) == 400


def test_garbage_and_stalls_are_survived(exchange, topic, services):
    symbol = unique("G") + "-USDT"
    exchange.idle_timeout_s = 3  # like OKX's 30 s, shortened
    services.start("consumer", topic)
    producer = services.start(
        "producer", topic, **producer_env(exchange, symbol, PING_INTERVAL_S="1", PONG_TIMEOUT_S="1")
    )
    port = TEST_PORTS.producer

    exchange.send_raw("this is not json")
    exchange.send_raw(json.dumps({"arg": {"channel": "trades-all", "instId": symbol}, "data": [{"instId": symbol}]}))
    exchange.send_raw(json.dumps({"event": "error", "code": "60012", "msg": "Invalid request"}))
    wait_for(lambda: metric(port, "gostream_producer_frames_rejected_total", 'reason="not-json"') == 1,
             message="garbage counted")
    assert metric(port, "gostream_producer_frames_rejected_total", 'reason="missing-field"') == 1
    assert metric(port, "gostream_producer_exchange_errors_total", 'code="60012"') == 1

    # Text pings keep an idle connection open past the server's idle timeout.
    time.sleep(4.5)
    assert exchange.connections == 1 and exchange.pings >= 3

    # A stalled server (no pongs) is left and rejoined.
    exchange.silent = True
    wait_for(lambda: exchange.connections >= 2, message="reconnect after missing pongs")
    exchange.silent = False
    wait_for(lambda: exchange.subscribed(symbol) == 1, message="resubscribed")

    batch = generate(symbol, 100)
    exchange.emit(batch)
    wait_for(lambda: count(symbol) == 100, message="trades after the stall")
    assert stored(symbol) == expected_rows(batch)
    assert producer.alive()


def test_unknown_symbol_is_reported_and_the_others_flow(exchange, topic, services):
    good = unique("K") + "-USDT"
    exchange.unknown_symbols = {"NOPE-USDT"}
    services.start("consumer", topic)
    services.start("producer", topic, wait=False, **producer_env(exchange, f"{good},NOPE-USDT"))
    port = TEST_PORTS.producer
    wait_for(lambda: metric(port, "gostream_producer_exchange_errors_total", 'code="60018"') >= 1,
             message="the error event counted")
    with pytest.raises(urllib.error.HTTPError) as not_ready:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
    assert not_ready.value.code == 503
    assert "not subscribed to NOPE-USDT" in json.loads(not_ready.value.read())["problems"][0]
    exchange.emit(generate(good, 20))
    wait_for(lambda: count(good) == 20, message="trades of the good symbol")


def test_sigterm_publishes_everything_received(exchange, topic, services):
    symbol = unique("S") + "-USDT"
    producer = services.start("producer", topic, **producer_env(exchange, symbol))
    exchange.emit(generate(symbol, 3000))
    assert producer.stop() == 0
    lines = [json.loads(line) for line in producer.log_path.read_text().splitlines() if line.startswith("{")]
    closed = next(line for line in lines if line["message"] == "kafka closed")
    stopped = next(line for line in lines if line["message"] == "producer stopped")
    assert stopped["received"] > 0
    assert closed["published"] == stopped["received"]
    assert closed["dropped"] == closed["failed"] == 0
    assert sum(len(decode(r.value)) for r in read_topic(topic)) == closed["published"]


def test_trades_printed_while_disconnected_are_backfilled_over_rest(exchange, topic, services):
    symbol = unique("B") + "-USDT"
    trades = generate(symbol, 1000)
    services.start("consumer", topic)
    services.start("producer", topic, **producer_env(exchange, symbol))
    exchange.emit(trades[:100])
    wait_for(lambda: count(symbol) == 100, message="the first 100 trades")

    # The connection drops and the exchange keeps trading: 350 trades (4 REST pages)
    # are printed while nobody listens; on resubscribe only the latest is re-sent.
    exchange.accepting = False
    exchange.drop_connections()
    exchange.emit(trades[100:450])
    exchange.accepting = True
    wait_for(lambda: exchange.subscribed(symbol) == 1, message="resubscribed")
    exchange.emit(trades[450:])

    wait_for(lambda: count(symbol) == 1000, message="all 1000 trades, the gap backfilled")
    assert stored(symbol) == expected_rows(trades)
    port = TEST_PORTS.producer
    assert metric(port, "gostream_producer_gaps_detected_total") == 1
    assert metric(port, "gostream_producer_trades_backfilled_total") == 349
    assert exchange.rest_requests >= 4

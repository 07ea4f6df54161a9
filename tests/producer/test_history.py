"""History at start: the window before the first stored trade, fetched over REST through
the whole pipeline, newest first, resumed after a restart."""

import time

import pytest

from gostream.producer.history import parse_window
from tests.conftest import TEST_PORTS, metric, sql, unique, wait_for
from tests.pipeline.test_ingest import count, producer_env


@pytest.mark.parametrize("text, seconds", [("6h", 21600), ("90m", 5400), ("2d", 172800), ("45", 45), ("0", 0),
                                           (" 1.5h ", 5400), ("30s", 30)])
def test_windows(text, seconds):
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "6 hours", "-1h", "1w", "6h30m", "nan"])
def test_bad_windows_are_refused(text):
    with pytest.raises(ValueError, match="duration"):
        parse_window(text)


def past(symbol: str, hours: float, first_id: int = 1) -> list[dict]:
    """One trade a second up to now, oldest first."""
    now_ms = int(time.time() * 1000)
    n = int(hours * 3600)
    return [{"instId": symbol, "tradeId": str(first_id + i), "px": f"{100 + i % 50}.5", "sz": "0.1",
             "side": ("buy", "sell")[i % 2], "ts": str(now_ms - (n - i) * 1000)} for i in range(n)]


def stored_ids(symbol: str) -> list[int]:
    return [r["trade_id"] for r in sql(f"select trade_id from trades where symbol = '{symbol}' order by trade_id")]


def test_the_window_is_fetched_then_widened_after_a_restart(exchange, topic, services):
    symbol = unique("HIST") + "-USDT"
    trades = past(symbol, 3)
    exchange.emit(trades)  # printed before anyone listened: only REST has them
    services.start("consumer", topic)
    producer = services.start("producer", topic, **producer_env(exchange, symbol, HISTORY_WINDOW="30m"))

    def within(minutes: float) -> list[int]:
        start_ms = int(trades[-1]["ts"]) - minutes * 60_000
        return [int(t["tradeId"]) for t in trades if int(t["ts"]) >= start_ms]

    # The window starts 30 minutes before the producer did, a few seconds after the last
    # trade was printed: a few seconds' trades of slack.
    def done() -> bool:
        return metric(TEST_PORTS.producer, "gostream_producer_history_remaining_seconds", f'symbol="{symbol}"') == 0

    wait_for(lambda: done() and count(symbol) >= len(within(30)) - 15, timeout_s=120, message="30 minutes of history")
    first = stored_ids(symbol)
    assert first[-1] == len(trades) and first == list(range(first[0], len(trades) + 1))
    assert len(within(30)) - 15 <= len(first) <= len(within(30))
    producer.stop()

    requests = exchange.rest_requests
    services.start("producer", topic, **producer_env(exchange, symbol, HISTORY_WINDOW="1h"))
    wait_for(lambda: count(symbol) >= len(within(60)) - 30 and done(), timeout_s=120,
             message="the window widened to an hour")
    second = stored_ids(symbol)
    assert second == list(range(second[0], len(trades) + 1)) and len(second) <= len(within(60))
    # Only what was missing was asked for: ~30 minutes below the oldest stored trade.
    assert exchange.rest_requests - requests <= (len(second) - len(first)) // 100 + 3


def test_a_window_of_0_fetches_nothing(exchange, topic, services):
    symbol = unique("NOHIST") + "-USDT"
    exchange.emit(past(symbol, 0.1))
    services.start("consumer", topic)
    services.start("producer", topic, **producer_env(exchange, symbol, HISTORY_WINDOW="0"))
    wait_for(lambda: count(symbol) == 1, message="the latest trade, re-sent on subscribe")
    assert exchange.rest_requests == 0

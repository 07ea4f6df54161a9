"""/stream: a trade sent to the exchange reaches a Server-Sent Events client."""

from __future__ import annotations

import time

import pytest

from gostream.api.stream import CATCH_UP
from tests.api.pipeline import assert_candles_equal, expected_candles
from tests.api.sse import SSE
from tests.conftest import TEST_PORTS


def test_trade_reaches_stream_client(market):
    symbol = market.live
    sent = market.trades[symbol]
    stream = SSE(TEST_PORTS.api, f"/stream?symbol={symbol}&interval=1m")
    try:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type").startswith("text/event-stream")
        hello = stream.until(lambda e, _: e[0] == "hello")
        assert hello[-1][1]["symbol"] == symbol and hello[-1][1]["interval"] == "1m"
        first = stream.until(lambda e, _: e[0] == "candle")[-1][1]
        assert first == pytest.approx(expected_candles(sent, "1m")[-1], rel=1e-12)

        last = sent[-1]
        trade = {**last, "tradeId": str(int(last["tradeId"]) + 1), "px": "31111.1", "sz": "0.25", "side": "sell",
                 "ts": str(int(time.time() * 1000))}
        market.pipeline.exchange.emit([trade])
        sent.append(trade)
        # A batch is its buckets' candles, then its trades (the event with the stream's position).
        seen = stream.until(lambda e, _: e[0] == "trades" and any(t["price"] == 31111.1 for t in e[1]))
        assert {"id": int(trade["tradeId"]), "time_ms": int(trade["ts"]), "price": 31111.1, "size": 0.25,
                "side": "sell"} in seen[-1][1]
        candles = [data for name, data in seen if name == "candle"]
        assert candles[-1] == pytest.approx(expected_candles(sent, "1m")[-1], rel=1e-12)
        assert stream.last_id == f"{int(trade['ts']) * 1000}-{trade['tradeId']}"
        # Idle now: the server keeps the connection alive with comments (every 1 s in tests).
        stream.until(lambda e, _: e == ("comment", ": keep-alive"), timeout_s=10)
    finally:
        stream.close()


def starting_events(path: str) -> list[tuple[str, object]]:
    """The events a stream sends after hello and the symbol's stats and every symbol's
    tickers, up to its first keep-alive comment (a quiet symbol's stream sends nothing
    else until then but stats and tickers of other symbols' trades, left out)."""
    stream = SSE(TEST_PORTS.api, path)
    try:
        assert stream.response.status == 200
        seen = stream.until(lambda e, _: e[0] == "comment")
    finally:
        stream.close()
    assert [name for name, _ in seen[:3]] == ["hello", "stats", "tickers"]
    return [(name, data) for name, data in seen[3:-1] if name not in ("stats", "tickers")]


def starting_candles(path: str) -> list[dict]:
    events = starting_events(path)
    assert {name for name, _ in events} == {"candle"}, events
    return [data for _, data in events]


@pytest.mark.parametrize("interval", ["1m", "1h"])
def test_stream_starts_with_the_forming_candle(market, interval):
    symbol = market.spread
    got = starting_candles(f"/stream?symbol={symbol}&interval={interval}")
    assert_candles_equal(got, expected_candles(market.trades[symbol], interval)[-1:])


def test_stream_since_a_bar_sends_every_bucket_from_it_on(market):
    # A client that loaded /candles, then saw buckets close before it subscribed: given
    # its newest bar, it gets their final values (a time inside the bucket means the bucket).
    symbol = market.spread
    expected = expected_candles(market.trades[symbol], "1m")
    got = starting_candles(f"/stream?symbol={symbol}&interval=1m&since={expected[-4]['time'] + 30}")
    assert_candles_equal(got, expected[-4:])


def test_stream_since_long_ago_sends_the_latest_catch_up_candles(market):
    symbol = market.spread
    expected = expected_candles(market.trades[symbol], "1m")
    assert len(expected) > CATCH_UP
    got = starting_candles(f"/stream?symbol={symbol}&interval=1m&since=0")
    assert_candles_equal(got, expected[-CATCH_UP:])


def test_stream_trades_since_sends_the_trades_from_then_on(market):
    # The tape's counterpart: trades that landed between the client's /trades and now.
    symbol = market.spread
    sent = sorted(market.trades[symbol], key=lambda t: (int(t["ts"]), int(t["tradeId"])))
    since_ms = int(sent[-5]["ts"])
    want = [{"id": int(t["tradeId"]), "time_ms": int(t["ts"]), "price": float(t["px"]), "size": float(t["sz"]),
             "side": t["side"]} for t in sent if int(t["ts"]) >= since_ms]
    events = starting_events(f"/stream?symbol={symbol}&interval=1h&trades_since={since_ms}")
    assert [name for name, _ in events] == ["candle", "trades"]
    assert events[1][1] == want

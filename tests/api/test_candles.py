"""Candles through the api equal candles computed here from the trades sent."""

from __future__ import annotations

import pytest

from gostream.api.queries import RAW_CANDLES
from tests.api.pipeline import INTERVAL_SECONDS, assert_candles_equal, expected_candles, get
from tests.conftest import TEST_PORTS, sql

PORT = TEST_PORTS.api
ALL = "from=0&to=4102444800&limit=5000"


def candles(query: str) -> list[dict]:
    status, body = get(PORT, f"/candles?{query}")
    assert status == 200, body
    return body


def test_recorded_minute_is_the_known_candle(market):
    got = candles(f"symbol={market.recording}&interval=1m")
    assert got == [pytest.approx({"time": 1652459220, "open": 30236.0, "high": 30251.7, "low": 30220.1,
                                  "close": 30227.6, "volume": 3.48657495}, rel=1e-12)]
    assert_candles_equal(got, expected_candles(market.trades[market.recording], "1m"))


@pytest.mark.parametrize("interval", list(INTERVAL_SECONDS))
def test_every_interval_matches_the_trades(market, interval):
    for symbol in (market.recording, market.spread):
        got = candles(f"symbol={symbol}&interval={interval}&{ALL}")
        want = expected_candles(market.trades[symbol], interval)
        assert len(want) >= (1 if symbol == market.recording else 3)
        assert_candles_equal(got, want)


def test_view_and_raw_sample_by_agree(market):
    """The 1m materialized view and SAMPLE BY over the trades give identical candles."""
    for symbol in (market.recording, market.spread, market.live):
        view = sql(f"SELECT timestamp, open, high, low, close, volume FROM candles_1m "
                   f"WHERE symbol = '{symbol}' ORDER BY timestamp")
        raw = sql(f"SELECT timestamp, first(price) open, max(price) high, min(price) low, last(price) close, "
                  f"sum(size) volume FROM trades WHERE symbol = '{symbol}' SAMPLE BY 1m")
        assert len(view) == len(raw) > 0
        for v, r in zip(view, raw):
            assert v == {**r, "volume": pytest.approx(r["volume"], rel=1e-12)}
    # And the api's raw query text (used for sub-minute intervals) agrees with the view path.
    assert "SAMPLE BY 1m" in RAW_CANDLES["1m"]


def test_default_is_recent_btc_usdt_1m():
    assert candles("") == candles("symbol=BTC-USDT&interval=1m&limit=500")


def test_range_edges(market):
    symbol, trades = market.spread, market.trades[market.spread]
    want = expected_candles(trades, "1h")
    first, second, last = want[0]["time"], want[1]["time"], want[-1]["time"]
    base = f"symbol={symbol}&interval=1h"
    # Bounds are inclusive and select whole buckets, wherever inside them they fall.
    assert_candles_equal(candles(f"{base}&from={first}&to={first}"), want[:1])
    assert_candles_equal(candles(f"{base}&from={first + 1}&to={first + 3599}"), want[:1])
    assert_candles_equal(candles(f"{base}&from={first}&to={second}"),
                         [c for c in want if first <= c["time"] <= second])
    assert_candles_equal(candles(f"{base}&from={second}&limit=5000"), want[1:])
    # Without `to`: up to the latest trade; without `from`: the `limit` buckets before `to`.
    assert_candles_equal(candles(f"{base}&limit=5000"), [c for c in want if c["time"] > last - 5000 * 3600])
    assert_candles_equal(candles(f"{base}&to={second}&limit=24"),
                         [c for c in want if second - 23 * 3600 <= c["time"] <= second])
    # Nothing before the first trade, nothing after the last.
    assert candles(f"{base}&from=0&to={first - 1}") == []
    assert candles(f"{base}&from={last + 3600}") == []
    # A window reaching back before 1970 (`limit` buckets before an early `to`) is cut at the epoch.
    assert candles(f"{base}&to=6595&limit=133") == []
    assert candles("symbol=NOSUCH-USDT&interval=1m") == []


def test_limit_edges(market):
    symbol = market.spread
    want = expected_candles(market.trades[symbol], "1m")
    assert len(want) > 10
    assert_candles_equal(candles(f"symbol={symbol}&interval=1m&{ALL.replace('limit=5000', 'limit=1')}"), want[-1:])
    assert_candles_equal(candles(f"symbol={symbol}&interval=1m&from=0&to=4102444800&limit=7"), want[-7:])
    assert_candles_equal(candles(f"symbol={symbol}&interval=1m&from=0&to=4102444800&limit=5000"), want)
    one_second = expected_candles(market.trades[symbol], "1s")
    assert_candles_equal(candles(f"symbol={symbol}&interval=1s&from=0&limit={len(one_second)}"), one_second)
    assert_candles_equal(candles(f"symbol={symbol}&interval=1s&from=0&limit={len(one_second) - 1}"), one_second[1:])

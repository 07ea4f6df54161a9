"""/stream's stats (the /stats of its symbol) and tickers (every symbol's last price and
24 h change, for a watchlist): made by the api, pushed when they change."""

from __future__ import annotations

import time

from tests.api.pipeline import get, insert_trade
from tests.api.sse import SSE
from tests.conftest import TEST_PORTS, unique

PORT = TEST_PORTS.api


def test_stats_start_the_stream_and_follow_new_trades(market):
    symbol = unique("STA") + "-USDT"
    now = time.time()
    insert_trade(symbol, 1, 100.1, 0.1, now - 120)
    stream = SSE(PORT, f"/stream?symbol={symbol}&interval=1m")
    try:
        head = stream.until(lambda e, _: e[0] == "tickers")
        assert [name for name, _ in head] == ["hello", "stats", "tickers"]
        assert head[1][1] == get(PORT, f"/stats?symbol={symbol}")[1]
        assert (head[1][1]["last"], head[1][1]["trades"]) == (100.1, 1)

        insert_trade(symbol, 2, 100.3, 0.2, now - 1)
        insert_trade(symbol, 3, 100.2, 0.1, now)
        seen = stream.until(lambda e, _: e[0] == "stats" and e[1]["trades"] == 3)
        stats = seen[-1][1]
        assert stats == get(PORT, f"/stats?symbol={symbol}")[1]
        # Computed by the server over the stored trades, never binary noise (0.1 + 0.2 + 0.1).
        assert {k: stats[k] for k in ("last", "open", "high", "low", "volume", "change")} == {
            "last": 100.2, "open": 100.1, "high": 100.3, "low": 100.1, "volume": 0.4, "change": 0.1}
        assert stats["change_pct"] == float(f"{(100.2 - 100.1) / 100.1 * 100:.12g}")
    finally:
        stream.close()


def test_tickers_start_in_full_then_carry_the_symbols_that_changed(market):
    symbol = unique("TCK") + "-USDT"
    now = time.time()
    insert_trade(symbol, 1, 50.0, 1.0, now - 3600)
    stream = SSE(PORT, f"/stream?symbol={market.spread}&interval=1h")
    try:
        head = stream.until(lambda e, _: e[0] == "tickers")
        full = head[-1][1]
        assert full["full"] is True
        tickers = {t["symbol"]: t for t in full["tickers"]}
        listed = {s["symbol"]: s for s in get(PORT, "/symbols")[1]}
        assert set(tickers) <= set(listed) and {market.spread, market.recording} <= set(tickers)
        for quiet in (market.spread, market.recording):
            assert tickers[quiet] == {"symbol": quiet, "last": listed[quiet]["last"],
                                      "change_pct": listed[quiet]["change_pct_24h"], "time": listed[quiet]["time"]}

        insert_trade(symbol, 2, 55.0, 1.0, now)
        seen = stream.until(lambda e, _: e[0] == "tickers" and any(
            t["symbol"] == symbol and t["last"] == 55.0 for t in e[1]["tickers"]))
        update = seen[-1][1]
        assert update["full"] is False
        assert next(t for t in update["tickers"] if t["symbol"] == symbol) == {
            "symbol": symbol, "last": 55.0, "change_pct": 10.0, "time": int(now) // 60 * 60}
        # Only what changed: the quiet symbols are not sent again.
        assert not {market.spread, market.recording} & {t["symbol"] for t in update["tickers"]}
    finally:
        stream.close()

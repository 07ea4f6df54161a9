"""TradingView's UDF datafeed under /udf, against the real api and QuestDB, with trades
written here: bars equal /candles bars, countback, no_data with and without nextTime,
symbol info from instrument metadata (or the latest price), search, time, UDF errors, and
the same answers through the frontend's /api proxy."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request

import pytest

from gostream.api.udf import RESOLUTIONS
from tests.api.pipeline import INTERVAL_SECONDS, expected_candles, get, spread_trades
from stack import components as c
from stack.process import Process
from tests.conftest import TEST_PORTS, spare_port, sql, unique, wait_for

PORT = TEST_PORTS.api
T0_MS = 1_714_521_600_000  # 2024-05-01 00:00 UTC
GAP = (T0_MS // 1000 + 6 * 3600, T0_MS // 1000 + 30 * 3600)  # no trades between these (epoch s)
INTERVAL_OF = {"1S": "1s", "5S": "5s", "15S": "15s", "1": "1m", "5": "5m", "15": "15m", "30": "30m", "60": "1h",
               "240": "4h", "1D": "1d"}


def _insert(rows: list[str], table: str, columns: str) -> None:
    query = f"INSERT INTO {table} ({columns}) VALUES " + ", ".join(rows)
    url = f"http://127.0.0.1:{TEST_PORTS.questdb_http}/exec?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.status == 200, response.read()


def write_trades(trades: list[dict]) -> None:
    """Trades straight into QuestDB as the consumer writes them; waits until the 1m view holds them."""
    symbol = trades[0]["instId"]
    for i in range(0, len(trades), 100):
        _insert([f"('{t['instId']}', '{t['side']}', {t['tradeId']}, {t['px']}, {t['sz']}, 1, {int(t['ts']) * 1000}, "
                 f"{int(t['ts']) * 1000})" for t in trades[i:i + 100]],
                "trades", "symbol, side, trade_id, price, size, fills, received_at, timestamp")
    wait_for(lambda: (sql(f"SELECT sum(trades) n FROM candles_1m WHERE symbol = '{symbol}'") or [{}])[0].get("n")
             == len(trades), 60, message=f"the 1m view to hold {symbol}")


@pytest.fixture(scope="module")
def udf_market(api):
    """Two symbols: one with OKX instrument metadata (tick 0.5, lot 0.0001), one without;
    trades for 6 h, nothing for a day, trades for 6 h more."""
    with_meta, without = unique("UDFM") + "-USDT", unique("UDFX") + "-USDT"
    trades = {}
    for symbol in (with_meta, without):
        first = spread_trades(symbol, T0_MS, 6 * 3600, 150, seed=11)
        second = spread_trades(symbol, GAP[1] * 1000, 6 * 3600, 150, seed=12, first_id=6_000_000)
        trades[symbol] = first + second
        write_trades(trades[symbol])
    now_us = int(time.time() * 1e6)
    _insert([f"('{with_meta}', 'SPOT', '0.5', '0.0001', '0.0001', '', '{with_meta.split('-')[0]}', 'USDT', 'live', "
             f"{now_us}, 0)"], "instruments",
            "symbol, inst_type, tick_sz, lot_sz, min_sz, ct_val, base_ccy, quote_ccy, state, updated_at, ts")
    return with_meta, without, trades


def udf(path: str) -> tuple[int, object]:
    return get(PORT, f"/udf/{path}")


def candles(symbol: str, interval: str, start: int, end: int, limit: int = 5000) -> list[dict]:
    status, body = get(PORT, f"/candles?symbol={symbol}&interval={interval}&from={start}&to={end}&limit={limit}")
    assert status == 200, body
    return body


def as_columns(bars: list[dict]) -> dict:
    return {"s": "ok", "t": [b["time"] for b in bars], "o": [b["open"] for b in bars], "h": [b["high"] for b in bars],
            "l": [b["low"] for b in bars], "c": [b["close"] for b in bars], "v": [b["volume"] for b in bars]}


def test_config_offers_exactly_the_apis_intervals(api):
    status, config = udf("config")
    assert status == 200
    assert config["supported_resolutions"] == list(INTERVAL_OF)
    assert {RESOLUTIONS[r].name for r in config["supported_resolutions"]} == set(INTERVAL_SECONDS)
    assert config["supports_search"] and not config["supports_group_request"] and config["supports_time"]
    assert {"value": "OKX", "name": "OKX", "desc": "OKX"} in config["exchanges"]


@pytest.mark.parametrize("resolution", list(INTERVAL_OF))
def test_history_bars_equal_candles_bars(udf_market, resolution):
    symbol, _, trades = udf_market
    interval = INTERVAL_OF[resolution]
    start, end = T0_MS // 1000, GAP[1] + 6 * 3600 + 60
    expected = expected_candles(trades[symbol], interval)
    status, history = udf(f"history?symbol={symbol}&resolution={resolution}&from={start}&to={end}")
    assert status == 200, history
    bars = candles(symbol, interval, start, end - 1)  # UDF's `to` is exclusive, /candles' inclusive
    assert bars and history == as_columns(bars)
    assert history["t"] == [c["time"] for c in expected if start <= c["time"] < end]  # and both are the trades'
    # `to` is exclusive: a range ending at a bar's start leaves that bar out.
    last = history["t"][-1]
    status, upto = udf(f"history?symbol={symbol}&resolution={resolution}&from={start}&to={last}")
    assert upto == as_columns(bars[:-1])
    # The full name a client may send back, and a range inside: the same bars.
    mid = history["t"][len(history["t"]) // 2]
    status, part = udf(f"history?symbol=OKX:{symbol}&resolution={resolution}&from={mid}&to={end}")
    assert part == as_columns([b for b in bars if b["time"] >= mid])


def test_countback_is_the_latest_bars_before_to(udf_market):
    symbol, _, trades = udf_market
    end = GAP[1] + 3600
    status, history = udf(f"history?symbol={symbol}&resolution=5&from={end - 60}&to={end}&countback=20")
    assert status == 200, history
    bars = candles(symbol, "5m", 0, end - 1, limit=20)
    assert history == as_columns(bars) and len(bars) == 20
    assert bars[0]["time"] < GAP[0] < GAP[1] <= bars[-1]["time"]  # counted across the gap, not in buckets
    want = [c for c in expected_candles(trades[symbol], "5m") if c["time"] < end][-20:]
    assert history["t"] == [c["time"] for c in want]


@pytest.mark.parametrize("resolution", ["1S", "15S", "1", "60", "1D"])
def test_no_data_with_next_time_in_a_gap_and_none_before_the_first_trade(udf_market, resolution):
    symbol, _, trades = udf_market
    interval = INTERVAL_OF[resolution]
    step = INTERVAL_SECONDS[interval]
    expected = expected_candles(trades[symbol], interval)
    gap_from, gap_to = GAP[0] + 3600, GAP[1] - 3600
    if step >= 86_400:  # a day bar spans the gap: ask after the last one instead
        gap_from, gap_to = expected[-1]["time"] + 2 * step, expected[-1]["time"] + 5 * step
    status, body = udf(f"history?symbol={symbol}&resolution={resolution}&from={gap_from}&to={gap_to}")
    assert status == 200
    latest_before = max(c["time"] for c in expected if c["time"] < gap_from // step * step)
    assert body == {"s": "no_data", "nextTime": latest_before}
    first = expected[0]["time"]
    status, body = udf(f"history?symbol={symbol}&resolution={resolution}&from={first - 30 * step}&to={first}")
    assert (status, body) == (200, {"s": "no_data"})
    status, body = udf(f"history?symbol={symbol}&resolution={resolution}&from=0&to={first}&countback=10")
    assert (status, body) == (200, {"s": "no_data"})


def test_symbol_info_from_instrument_metadata_or_the_latest_price(udf_market):
    with_meta, without, trades = udf_market

    def info(symbol):
        status, body = udf(f"symbols?symbol={symbol}")
        assert status == 200, body
        return body

    # The api reads instrument metadata every few seconds: wait for the row written above.
    wait_for(lambda: info(with_meta)["pricescale"] == 10, 60, message="metadata of the instrument read")
    meta = info(with_meta)
    assert (meta["pricescale"], meta["minmov"], meta["volume_precision"]) == (10, 5, 4)
    assert meta["name"] == meta["ticker"] == with_meta and meta["full_name"] == f"OKX:{with_meta}"
    assert (meta["type"], meta["session"], meta["timezone"], meta["exchange"]) == ("crypto", "24x7", "Etc/UTC", "OKX")
    assert meta["description"].startswith(with_meta.split("-")[0] + "/USDT")
    assert meta["has_intraday"] and meta["has_seconds"] and meta["seconds_multipliers"] == ["1", "5", "15"]
    assert meta["intraday_multipliers"] == ["1", "5", "15", "30", "60", "240"] and meta["daily_multipliers"] == ["1"]
    plain = info(f"OKX:{without}")
    assert plain["name"] == without and plain["description"] == without
    last_price = sorted(trades[without], key=lambda t: (int(t["ts"]), int(t["tradeId"])))[-1]["px"]  # "30123.4"
    assert plain["pricescale"] == 10 ** max(2, len(last_price.partition(".")[2].rstrip("0")))
    assert (plain["minmov"], plain["volume_precision"]) == (1, 8)
    assert udf("symbols?symbol=NOSUCH-USDT") == (404, {"s": "error", "errmsg": "unknown_symbol"})


def test_search_finds_symbols_with_trades(udf_market):
    with_meta, without, _ = udf_market
    part = with_meta.split("-")[0][-6:].lower()  # any case, any part
    status, found = udf(f"search?query={part}&type=&exchange=&limit=10")
    assert status == 200
    assert [f["symbol"] for f in found] == [with_meta]
    assert found[0] == {"symbol": with_meta, "full_name": f"OKX:{with_meta}", "description": found[0]["description"],
                        "exchange": "OKX", "ticker": with_meta, "type": "crypto"}
    status, found = udf("search?query=UDF&type=crypto&exchange=OKX&limit=1")
    assert status == 200 and len(found) == 1 and found[0]["symbol"].startswith("UDF")
    assert udf("search?query=-USDT&limit=100")[1] and udf("search?query=NOTHING-LIKE-IT")[1] == []


def test_time_is_the_servers_clock(api):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/udf/time", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        assert abs(int(response.read()) - time.time()) < 60


@pytest.mark.parametrize("query,mentions", [
    ("history?symbol=BTC-USDT&from=1&to=2", "resolution: required"),
    ("history?symbol=BTC-USDT&resolution=2&from=1&to=2", "resolution"),
    ("history?symbol=BTC-USDT&resolution=1&from=5&to=1", "from (5) is after to (1)"),
    ("history?symbol=BTC-USDT&resolution=1&from=1&to=2&countback=0", "countback"),
    ("history?symbol=BTC-USDT&resolution=1&from=1&to=2&to=3", "given 2 times"),
    ("history?symbol=btc&resolution=1&from=1&to=2", "symbol"),
    ("symbols", "symbol: required"),
    ("symbols?symbol=BTC-USDT&x=1", "unknown parameter 'x'"),
    ("search?limit=101", "limit"),
    ("config?x=1", "unknown parameter"),
])
def test_errors_are_udf_errors_saying_why(api, query, mentions):
    status, body = udf(query)
    assert status == 400 and body["s"] == "error" and set(body) == {"s", "errmsg"}, body
    assert mentions in body["errmsg"], body


def test_udf_answers_through_the_frontend_proxy(udf_market, stack_dir):
    """A frontend of its own (the terminal's /api proxy) in front of the session's api."""
    symbol = udf_market[0]
    ports = c.Ports(frontend=spare_port(), api=PORT)
    spec = c.frontend(ports, c.service_env(ports, LOG_LEVEL="INFO"))
    process = Process(spec, stack_dir / "logs" / "frontend-udf").start().wait_ready(60)
    try:
        for path in ("config", f"symbols?symbol={symbol}", f"history?symbol={symbol}&resolution=60&from=0&to={GAP[1]}",
                     "history?symbol=x&resolution=60&from=0&to=1"):
            direct = get(PORT, f"/udf/{path}")
            assert get(ports.frontend, f"/api/udf/{path}") == direct and direct[1], path
    finally:
        process.stop()

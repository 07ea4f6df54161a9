"""The api's other endpoints, its validation, its errors and its OpenAPI document."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from stack import components as c
from stack.process import Process
from tests.api.pipeline import expected_candles, get
from tests.conftest import TEST_PORTS, spare_port

PORT = TEST_PORTS.api


BAD = [
    ("/candles?symbol=btc-usdt", "symbol"),
    ("/candles?symbol=BTC", "symbol"),
    ("/candles?symbol=BTC-USDT'%20OR%201=1--", "symbol"),
    ("/candles?symbol=" + "A" * 21 + "-USDT", "symbol"),
    ("/candles?symbol=BTC-USDT&symbol=ETH-USDT", "symbol"),
    ("/candles?interval=2m", "interval"),
    ("/candles?interval=1M", "interval"),
    ("/candles?interval=", "interval"),
    ("/candles?from=abc", "from"),
    ("/candles?from=-5", "from"),
    ("/candles?from=1.5", "from"),
    ("/candles?to=99999999999", "to"),
    ("/candles?from=1652459280000", "from"),
    ("/candles?from=200&to=100", "after"),
    ("/candles?limit=0", "limit"),
    ("/candles?limit=5001", "limit"),
    ("/candles?limit=ten", "limit"),
    ("/candles?limit=", "limit"),
    ("/candles?start=1", "unknown parameter"),
    ("/trades?limit=1001", "limit"),
    ("/trades?symbol=x", "symbol"),
    ("/trades?interval=1m", "unknown parameter"),
    ("/stats?symbol=BTC_USDT", "symbol"),
    ("/stats?limit=3", "unknown parameter"),
    ("/symbols?symbol=BTC-USDT", "unknown parameter"),
    ("/stream?interval=7s", "interval"),
    ("/stream?symbol=%27", "symbol"),
    ("/stream?since=abc", "since"),
    ("/stream?since=-60", "since"),
    ("/stream?since=99999999999", "since"),
    ("/stream?trades_since=1.5", "trades_since"),
    ("/stream?trades_since=-1", "trades_since"),
    ("/stream?last_event_id=abc", "last_event_id"),
    ("/trades?limit=1&limit=2", "given 2 times"),
    ("/completeness?symbol=BTC-USDT&symbol=BTC-USDT", "given 2 times"),
    ("/candles?limit=+5", "limit"),
    ("/candles?limit=5.0", "limit"),
    ("/candles?limit=%205", "limit"),
    ("/completeness?from=2&to=1", "after"),
    ("/?verbose=1", "unknown parameter"),
]


@pytest.mark.parametrize("path,mentions", BAD)
def test_bad_parameters_get_400_saying_why(api, path, mentions):
    status, body = get(PORT, path)
    assert status == 400, body
    assert set(body) == {"error"} and mentions in body["error"], body


def test_unknown_path_and_method_are_json(api):
    status, body = get(PORT, "/nope")
    assert status == 404 and "error" in body
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/candles", method="POST")
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("POST /candles was accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 405 and "error" in json.loads(exc.read())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["/candles", "/trades", "/stats", "/symbols", "/completeness"]),
       st.dictionaries(st.sampled_from(["symbol", "interval", "from", "to", "limit", "x"]),
                       st.text(max_size=30), max_size=4))
def test_no_input_gets_a_500(api, path, params):
    status, body = get(PORT, f"{path}?{urllib.parse.urlencode(params)}")
    assert status in (200, 400), (status, body)
    if status == 400:
        assert isinstance(body, dict) and body["error"]


def test_symbols_trades_stats(market):
    symbol, trades = market.spread, market.trades[market.spread]
    status, symbols = get(PORT, "/symbols")
    assert status == 200
    listed = {s["symbol"]: s for s in symbols}
    last_candle = expected_candles(trades, "1m")[-1]
    assert {k: listed[symbol][k] for k in ("symbol", "last", "time")} == {
        "symbol": symbol, "last": last_candle["close"], "time": last_candle["time"]}
    assert market.recording in listed and market.live in listed

    status, tape = get(PORT, f"/trades?symbol={symbol}&limit=5")
    assert status == 200
    newest = sorted(trades, key=lambda t: (int(t["ts"]), int(t["tradeId"])))[::-1][:5]
    assert [t["id"] for t in tape] == [int(t["tradeId"]) for t in newest]
    assert tape[0] == {"id": int(newest[0]["tradeId"]), "time_ms": int(newest[0]["ts"]), "price": float(newest[0]["px"]),
                       "size": float(newest[0]["sz"]), "side": newest[0]["side"]}

    status, stats = get(PORT, f"/stats?symbol={symbol}")
    assert status == 200
    last_ms = max(int(t["ts"]) for t in trades)
    window = [t for t in trades if last_ms - 86_400_000 < int(t["ts"]) <= last_ms]
    day = expected_candles(window, "1d")  # a one-bucket summary of the window
    prices = [float(t["px"]) for t in sorted(window, key=lambda t: (int(t["ts"]), int(t["tradeId"])))]
    assert stats["symbol"] == symbol and stats["time_ms"] == last_ms
    assert stats["last"] == prices[-1] and stats["open"] == prices[0]
    assert stats["high"] == max(prices) and stats["low"] == min(prices)
    assert stats["volume"] == pytest.approx(sum(c["volume"] for c in day), rel=1e-9)
    assert stats["trades"] == len(window) < len(trades)
    assert stats["change"] == pytest.approx(prices[-1] - prices[0])
    assert stats["change_pct"] == pytest.approx((prices[-1] - prices[0]) / prices[0] * 100)

    status, empty = get(PORT, "/stats?symbol=NOSUCH-USDT")
    assert status == 200 and empty["last"] is None and empty["trades"] == 0


def test_openapi_document_is_valid_and_complete(api):
    status, doc = get(PORT, "/openapi.json")
    assert status == 200
    validate(doc)  # raises on anything that is not valid OpenAPI 3.1
    assert doc["openapi"].startswith("3.1")
    served = {"/", "/openapi.json", "/candles", "/symbols", "/trades", "/stats", "/completeness", "/stream", "/healthz", "/readyz", "/metrics",
              "/udf/config", "/udf/symbols", "/udf/search", "/udf/history", "/udf/time"}
    assert set(doc["paths"]) == served
    params = {path: {p["name"] for p in item["get"].get("parameters", [])} for path, item in doc["paths"].items()}
    assert params["/candles"] == {"symbol", "interval", "from", "to", "limit"}
    assert params["/trades"] == {"symbol", "limit"}
    assert params["/stats"] == {"symbol"}
    assert params["/stream"] == {"symbol", "interval", "since", "trades_since", "last_event_id"}
    assert params["/completeness"] == {"symbol", "from", "to"}
    assert params["/udf/history"] == {"symbol", "resolution", "from", "to", "countback"}
    assert params["/udf/search"] == {"query", "type", "exchange", "limit"}
    for path in ("/candles", "/trades", "/stats", "/completeness", "/stream", "/symbols", *(p for p in served if p.startswith("/udf/"))):
        assert {"200", "400", "503"} <= set(doc["paths"][path]["get"]["responses"]), path
    # The parameters' rules are the ones the api applies (one set of models makes both).
    limit = next(p for p in doc["paths"]["/candles"]["get"]["parameters"] if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 5000)
    assert get(PORT, "/candles?limit=5000&symbol=NOSUCH-USDT")[0] == 200 and get(PORT, "/candles?limit=5001")[0] == 400
    stream = doc["paths"]["/stream"]["get"]["responses"]["200"]["content"]
    assert set(stream) == {"text/event-stream"}


def test_health_and_metrics(api):
    assert get(PORT, "/healthz") == (200, {"alive": True})
    assert get(PORT, "/readyz") == (200, {"ready": True})
    get(PORT, "/candles?limit=1")
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'gostream_api_requests_total{endpoint="/candles",status="200"}' in text
    assert "gostream_api_request_duration_seconds_bucket" in text
    assert "_created" not in text



def test_questdb_unreachable_gets_503(stack_dir):
    """An api of its own, pointed at a port where no QuestDB listens."""
    port = spare_port()
    ports = c.Ports(api=port, questdb_pg=spare_port())
    env = c.service_env(ports, LOG_LEVEL="INFO", WEB_CONCURRENCY="1")
    spec = c.api(ports, env)
    spec.ready = lambda: c.http_ok(f"http://127.0.0.1:{port}/healthz")
    process = Process(spec, stack_dir / "logs" / "api-no-questdb").start().wait_ready(60)
    try:
        for path in ("/candles", "/candles?symbol=ETH-USDT&interval=1h&from=0", "/trades", "/stats", "/symbols",
                     "/completeness", "/completeness?symbol=ETH-USDT&from=0&to=100", "/stream?symbol=BTC-USDT"):
            status, body = get(port, path)
            assert status == 503, (path, status, body)
            assert set(body) == {"error"} and "QuestDB" in body["error"], body
        status, body = get(port, "/readyz")
        assert status == 503 and body["ready"] is False and body["problems"]
        assert get(port, "/candles?limit=0")[0] == 400  # validation still comes first
        assert get(port, "/completeness?from=2&to=1")[0] == 400
        assert get(port, "/healthz") == (200, {"alive": True})
        assert "Traceback" not in process.tail(200)
    finally:
        process.stop()

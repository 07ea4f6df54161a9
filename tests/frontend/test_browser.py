"""The terminal in a real browser (Debian's Chromium driven by Playwright), fed through
the real pipeline: exchange -> producer -> Kafka -> consumer -> QuestDB -> api -> frontend."""

from __future__ import annotations

import os
import time

import pytest

from tests.api.pipeline import get, spread_trades
from tests.conftest import ARTIFACTS, TEST_PORTS, sql, unique, wait_for

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

# Any pixel of the candle colours on one of the chart's canvases.
DRAWN = """() => [...document.querySelectorAll('#chart canvas')].some((canvas) => {
  if (!canvas.width || !canvas.height) return false;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < data.length; i += 4) {
    if ((data[i] === 38 && data[i + 1] === 166 && data[i + 2] === 154) ||
        (data[i] === 239 && data[i + 1] === 83 && data[i + 2] === 80)) return true;
  }
  return false;
})"""


@pytest.fixture
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: run `make deps` (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


def api_times(symbol: str, interval: str) -> list[int]:
    status, body = get(TEST_PORTS.api, f"/candles?symbol={symbol}&interval={interval}")
    assert status == 200, body
    return [c["time"] for c in body]


def test_terminal_draws_switches_and_goes_live(frontend, services, exchange, topic, browser):
    symbol = unique("WEB") + "-USDT"
    now_ms = int(time.time() * 1000)
    trades = spread_trades(symbol, now_ms - 20 * 60_000, 19 * 60, 150, seed=11)
    services.start("consumer", topic)
    services.start("producer", topic, OKX_WS_URL=exchange.ws_url(), OKX_REST_URL=exchange.rest_url, SYMBOLS=symbol)
    wait_for(lambda: exchange.subscribed(symbol), 30, message="producer subscribed")
    exchange.emit(trades)
    wait_for(lambda: sql(f"SELECT sum(trades) n FROM candles_1m WHERE symbol = '{symbol}'")[0]["n"] == len(trades),
             120, message="trades in QuestDB and the 1m view")

    page = browser.new_page(viewport={"width": 1440, "height": 860})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/api/stream" in r.url else None)
    page.goto(f"http://127.0.0.1:{TEST_PORTS.frontend}/?symbol={symbol}&interval=1m")

    assert page.title() == "Goosey LLC - QuestDB View"
    page.wait_for_function("() => window.terminal && !window.terminal.loading && window.terminal.pulse === 'live'",
                           timeout=20_000)
    minute_times = api_times(symbol, "1m")
    assert len(minute_times) >= 15
    page.wait_for_function(f"() => window.terminal.bars.length === {len(minute_times)}", timeout=10_000)
    assert page.evaluate("() => window.terminal.bars.map((b) => b.time)") == minute_times
    # The stream starts from the newest bar and trade loaded: nothing landing in between is missed.
    newest_ms = max(int(t["ts"]) for t in trades)
    assert streams and streams[-1].endswith(f"&since={minute_times[-1]}&trades_since={newest_ms}"), streams
    assert page.locator("#chart").get_attribute("data-bars") == str(len(minute_times))
    wait_for(lambda: page.evaluate(DRAWN), 10, message="candles drawn on the chart canvas")
    assert page.locator("#symbol").input_value() == symbol
    assert page.locator("#tape li").count() > 0
    assert page.locator("#stat-trades").inner_text() == str(len(trades))

    # Switch the interval: the chart reloads with the api's 1s candles.
    page.click("#intervals button[data-interval='1s']")
    second_times = api_times(symbol, "1s")
    assert second_times != minute_times
    page.wait_for_function("() => window.terminal.interval === '1s' && !window.terminal.loading", timeout=10_000)
    assert page.evaluate("() => window.terminal.bars.map((b) => b.time)") == second_times
    assert "interval=1s" in page.url
    page.wait_for_function("() => window.terminal.pulse === 'live'", timeout=10_000)

    # A new trade shows up without a reload: in the tape, the last price and a new bar.
    last = trades[-1]
    price = round(float(last["px"]) + 25.5, 1)
    trade = {**last, "tradeId": str(int(last["tradeId"]) + 1), "px": f"{price:.1f}", "sz": "0.42", "side": "buy",
             "ts": str(int(time.time() * 1000))}
    exchange.emit([trade])
    page.wait_for_selector(f"#tape li[data-id='{trade['tradeId']}']", timeout=20_000)
    page.wait_for_function(f"() => window.terminal.bars.at(-1).close === {price}", timeout=10_000)
    assert page.evaluate("() => window.terminal.bars.length") == len(second_times) + 1
    assert page.locator("#last-price").inner_text() == f"{price:,.1f}"
    assert page.locator("#last-price").get_attribute("data-direction") == "up"

    # Back to 1m for the picture.
    page.click("#intervals button[data-interval='1m']")
    page.wait_for_function("() => window.terminal.interval === '1m' && !window.terminal.loading "
                           "&& window.terminal.pulse === 'live'", timeout=10_000)
    minute_times = api_times(symbol, "1m")
    assert page.evaluate("() => window.terminal.bars.map((b) => b.time)") == minute_times
    assert page.evaluate("() => window.terminal.bars.at(-1).close") == price
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "terminal.png"))
    assert problems == []

"""P5 browser: a trade printed by the exchange -> the forming bar in the page shows it.

Everything real: exchange (in this process) -> producer -> Kafka -> consumer -> QuestDB
-> api (/stream, Server-Sent Events) -> frontend proxy -> Chromium (Playwright). Each
trade gets a price never seen before; a watcher in the page notes Date.now() when the
last bar's close first equals it (checked every 2 ms). Same machine, same clock.
"""

from __future__ import annotations

import os
import time

from bench.common import PORTS, Stack, percentiles
from tests.okxsim import OkxExchange

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SYMBOL = "P5-USDT"
WATCH = """() => {
  window.__seen = {};
  setInterval(() => {
    const bar = window.terminal.bars.at(-1);
    if (bar && !(bar.close in window.__seen)) window.__seen[bar.close] = Date.now();
  }, 2);
}"""


def run(stack: Stack, trades: int = 60, gap_s: float = 0.5) -> dict:
    if not os.access(CHROMIUM, os.X_OK):
        return {"error": f"{CHROMIUM} not found: apt-get install -y chromium"}
    from playwright.sync_api import sync_playwright

    with OkxExchange(port=PORTS.exchange) as exchange:
        topic = stack.topic("trades", 3)
        consumer = stack.service("consumer", topic, "bench-pipeline")
        producer = stack.service("producer", topic, None, OKX_WS_URL=exchange.ws_url(),
                                 OKX_REST_URL=exchange.rest_url, SYMBOLS=SYMBOL)
        while not exchange.subscribed(SYMBOL):
            time.sleep(0.1)
        next_id = 5_000_000

        def trade(price: float) -> dict:
            nonlocal next_id
            next_id += 1
            return {"instId": SYMBOL, "tradeId": str(next_id), "px": f"{price:.1f}", "sz": "0.01000", "side": "buy",
                    "ts": str(int(time.time() * 1000))}

        exchange.emit([trade(30_000.0)])
        time.sleep(2)
        latencies: list[float] = []
        missed = 0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 860})
                page.goto(f"http://127.0.0.1:{PORTS.frontend}/?symbol={SYMBOL}&interval=1m")
                page.wait_for_function("() => window.terminal && !window.terminal.loading "
                                       "&& window.terminal.pulse === 'live' && window.terminal.bars.length > 0",
                                       timeout=30_000)
                page.evaluate(WATCH)
                sent: dict[float, float] = {}
                for k in range(trades):
                    price = 30_001.0 + k * 1.5
                    sent[price] = time.time() * 1000
                    exchange.emit([trade(price)])
                    time.sleep(gap_s)
                time.sleep(3)
                seen = page.evaluate("() => window.__seen")
            finally:
                browser.close()
        for price, at in sent.items():
            shown = seen.get(str(price)) or seen.get(f"{price:.1f}") or seen.get(str(int(price)) if price.is_integer() else "")
            if shown:
                latencies.append(shown - at)
            else:
                missed += 1
        stack.stop(producer)
        stack.stop(consumer)
    return {"trades": trades, "gap_s": gap_s, "missed": missed, "latency_ms": percentiles(latencies),
            "note": "api STREAM_POLL_MS default (50 ms) and consumer FLUSH_INTERVAL_S default (10 ms) in the path"}

"""The terminal as a trader uses it, in Chromium against the real api and QuestDB: the
crosshair legend, older bars on scrolling left, overlays, zoom kept across a resync, UTC or
local time, interval keys, the view in the URL, the feed-stale status and the wide and narrow
layouts (watchlist and tape beside the chart, or under it)."""

from __future__ import annotations

import random
import re
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import pytest
from questdb import TimestampMicros, TimestampNanos

from gostream.common.schema import TRADES_TABLE
from tests.api.holes import _sender
from tests.api.pipeline import get, insert_trade
from tests.conftest import ARTIFACTS, TEST_PORTS, unique, wait_for
from tests.frontend.test_browser import browser  # noqa: F401 (the fixture)

SECONDS = 1300  # one 1s bar each: the first load shows 500, the rest come in pages on scrolling left
LOADED = "() => window.terminal && !window.terminal.loading && window.terminal.bars.length > 0"


@pytest.fixture(scope="module")
def market(api):
    """A symbol with two trades in every second of SECONDS, ending two minutes ago."""
    symbol = unique("TERM") + "-USDT"
    end_s = int(time.time()) - 120
    start_s = end_s - SECONDS
    rng = random.Random(5)
    price, trade_id, n = 30_000.0, 9_000_000, 0
    with _sender() as sender:
        for sec in range(start_s, end_s):
            for k in range(2):
                price = round(max(1.0, price + rng.randint(-30, 30) * 0.1), 1)
                trade_id += 1
                n += 1
                ms = sec * 1000 + k * 400 + rng.randrange(300)
                sender.row(TRADES_TABLE, symbols={"symbol": symbol, "side": rng.choice(("buy", "sell"))},
                           columns={"trade_id": trade_id, "price": price, "size": rng.randint(1, 900) / 1000,
                                    "fills": 1, "received_at": TimestampMicros(ms * 1000 + 500)},
                           at=TimestampNanos(ms * 1_000_000))
        sender.flush(transactional=True)
    wait_for(lambda: len(api_bars(symbol, "1s")) == SECONDS, 60, message=f"{SECONDS} 1s bars of {symbol}")
    return symbol


def api_bars(symbol: str, interval: str) -> list[dict]:
    status, body = get(TEST_PORTS.api, f"/candles?symbol={symbol}&interval={interval}&limit=5000")
    assert status == 200, body
    return body


def open_page(browser, url: str, **context):  # noqa: F811
    ctx = browser.new_context(viewport=context.pop("viewport", {"width": 1440, "height": 860}), **context)
    page = ctx.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(f"http://127.0.0.1:{TEST_PORTS.frontend}{url}")
    page.wait_for_function(LOADED, timeout=20_000)
    return page, problems


def sma(bars, n):
    return {bars[i]["time"]: sum(b["close"] for b in bars[i - n + 1:i + 1]) / n for i in range(n - 1, len(bars))}


def ema(bars, n):
    k, out = 2 / (n + 1), {}
    value = sum(b["close"] for b in bars[:n]) / n
    out[bars[n - 1]["time"]] = value
    for b in bars[n:]:
        value = b["close"] * k + value * (1 - k)
        out[b["time"]] = value
    return out


def vwap(bars):
    out, day, pv, v = {}, None, 0.0, 0.0
    for b in bars:
        if b["time"] // 86400 != day:
            day, pv, v = b["time"] // 86400, 0.0, 0.0
        pv += (b["high"] + b["low"] + b["close"]) / 3 * b["volume"]
        v += b["volume"]
        if v > 0:
            out[b["time"]] = pv / v
    return out


def assert_series(got: list[dict], want: dict) -> None:
    assert [p["time"] for p in got] == list(want)
    for p in got:
        assert p["value"] == pytest.approx(want[p["time"]], rel=1e-9), p


def test_legend_older_bars_on_scroll_and_overlays(frontend, market, browser):  # noqa: F811
    bars = api_bars(market, "1s")
    candle_requests: list[dict] = []
    page, problems = open_page(browser, f"/?symbol={market}&interval=1s")
    page.on("request", lambda r: candle_requests.append(parse_qs(urlparse(r.url).query))
            if "/api/candles" in r.url else None)
    page.wait_for_function("() => window.terminal.bars.length === 500")
    assert page.evaluate("() => window.terminal.bars") == bars[-500:]

    # The legend: the bar under the mouse, as the api has it.
    target = bars[-40]
    box = page.locator("#chart").bounding_box()
    x = page.evaluate(f"() => window.terminal.chart.timeScale().timeToCoordinate({target['time']})")
    page.mouse.move(box["x"] + x, box["y"] + 150)
    page.wait_for_function(f"() => window.terminal.legend && window.terminal.legend.time === {target['time']}")
    legend = page.evaluate("() => window.terminal.legend")
    for key in ("open", "high", "low", "close", "volume"):
        assert legend[key] == target[key], key
    assert legend["change"] == pytest.approx(target["close"] - bars[-41]["close"], abs=1e-9)
    for key in ("open", "high", "low", "close"):
        assert page.locator(f"#legend-{key}").inner_text() == f"{target[key]:,.1f}"
    assert page.locator("#legend-time").inner_text() == \
        datetime.fromtimestamp(target["time"], timezone.utc).strftime("%d %b %y %H:%M:%S")
    # The cursor away from the chart: the newest bar.
    page.mouse.move(5, 5)
    page.wait_for_function(f"() => window.terminal.legend.time === {bars[-1]['time']}")
    assert page.locator("#legend-close").inner_text() == f"{bars[-1]['close']:,.1f}"

    # Scrolling left (through the chart's own scroll API) loads the page before the oldest bar
    # (held until the view before it is read).
    held: list = []
    paging = lambda url: "/api/candles?" in url and "&to=" in url  # noqa: E731
    hold = lambda route: held.append(route)  # noqa: E731
    page.route(paging, hold)
    page.evaluate("() => window.terminal.chart.timeScale().setVisibleLogicalRange({ from: 5.5, to: 125.5 })")
    # (Playwright hands the page's events over while it is called: evaluate() keeps them coming.)
    wait_for(lambda: page.evaluate("() => true") and held, 10, message="a /candles request with `to`")
    page.wait_for_function("() => window.terminal.chart.timeScale().getVisibleLogicalRange().to === 125.5")
    before = page.evaluate("() => { const ts = window.terminal.chart.timeScale(); "
                           "return { logical: ts.getVisibleLogicalRange(), range: ts.getVisibleRange() }; }")
    assert page.evaluate("() => window.terminal.bars.length") == 500
    for route in held:
        route.continue_()
    page.unroute(paging, hold)
    page.wait_for_function("() => window.terminal.bars.length === 1000 && !window.terminal.loadingOlder")
    paged = [r for r in candle_requests if "to" in r]
    assert paged and int(paged[0]["to"][0]) < bars[-500]["time"] and paged[0]["limit"] == ["500"], candle_requests
    assert page.evaluate("() => window.terminal.bars") == bars[-1000:]
    after = page.evaluate("() => { const ts = window.terminal.chart.timeScale(); "
                          "return { logical: ts.getVisibleLogicalRange(), range: ts.getVisibleRange() }; }")
    # No jump: the same bars in view, the logical range moved by exactly the bars put in front.
    assert after["range"] == before["range"]
    assert after["logical"]["to"] == pytest.approx(before["logical"]["to"] + 500)
    assert after["logical"]["from"] == pytest.approx(before["logical"]["from"] + 500)
    # To the very start: the rest, then no more (empty windows before the first trade).
    wait_for(lambda: page.evaluate("""() => {
        const t = window.terminal;
        if (!t.loadingOlder) t.chart.timeScale().setVisibleLogicalRange({ from: 0.5, to: 120.5 });
        return t.historyDone && !t.loadingOlder;
    }"""), 30, message="the start of the history")
    assert page.evaluate("() => window.terminal.bars") == bars

    # Overlays from the toolbar: SMA 20 and VWAP on by default, EMA 50 toggled on; values as
    # computed here from the api's bars.
    assert page.locator("#overlays button[data-overlay='ema50']").get_attribute("aria-pressed") == "false"
    page.click("#overlays button[data-overlay='ema50']")
    page.wait_for_function("() => window.terminal.overlays.ema50.length > 0")
    overlays = page.evaluate("() => window.terminal.overlays")
    assert_series(overlays["sma20"], sma(bars, 20))
    assert_series(overlays["ema50"], ema(bars, 50))
    assert_series(overlays["vwap"], vwap(bars))
    page.wait_for_function("() => window.terminal.legend.ema50 != null")
    legend = page.evaluate("() => window.terminal.legend")
    assert legend["sma20"] == pytest.approx(sma(bars, 20)[bars[-1]["time"]], rel=1e-9)
    assert page.locator("#legend-overlays [data-overlay='vwap']").inner_text() == \
        f"VWAP {vwap(bars)[bars[-1]['time']]:,.1f}"
    page.click("#overlays button[data-overlay='sma20']")  # off again
    page.wait_for_function("() => window.terminal.overlays.sma20.length === 0")
    assert problems == []
    page.context.close()


def test_zoom_and_scroll_kept_across_a_resync(frontend, market, browser):  # noqa: F811
    bars = api_bars(market, "1s")
    state = {"zoomed": False, "reloaded": False}
    loads: list[str] = []

    def stream(route) -> None:
        if not state["zoomed"]:  # a stream that ends at once: the browser reconnects (retry: 300 ms)
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"},
                          body="retry: 300\n\nevent: hello\ndata: {}\n\n")
        elif not state["reloaded"]:  # the api says: too far behind, load /candles again
            state["reloaded"] = True
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"},
                          body="retry: 60000\n\nevent: hello\ndata: {}\n\nevent: reload\ndata: {}\n\n")
        else:
            route.continue_()

    ctx = browser.new_context(viewport={"width": 1440, "height": 860})
    page = ctx.new_page()
    page.route(lambda url: "/api/stream?" in url, stream)
    page.on("request", lambda r: loads.append(r.url) if "/api/candles" in r.url and "to=" not in r.url else None)
    page.goto(f"http://127.0.0.1:{TEST_PORTS.frontend}/?symbol={market}&interval=1s")
    page.wait_for_function("() => window.terminal && window.terminal.bars.length === 500", timeout=20_000)
    page.evaluate("() => window.terminal.chart.timeScale().setVisibleLogicalRange({ from: 200.5, to: 260.5 })")
    page.wait_for_function("() => window.terminal.chart.timeScale().getVisibleLogicalRange().to === 260.5")
    zoomed = page.evaluate("() => { const ts = window.terminal.chart.timeScale(); "
                           "return { logical: ts.getVisibleLogicalRange(), range: ts.getVisibleRange() }; }")
    assert zoomed["logical"] == {"from": 200.5, "to": 260.5}
    assert len(loads) == 1
    state["zoomed"] = True
    wait_for(lambda: page.evaluate("() => true") and len(loads) == 2, 20, message="the resync's /candles")
    page.wait_for_function("() => !window.terminal.loading && window.terminal.pulse === 'live'", timeout=20_000)
    assert page.evaluate("() => window.terminal.bars") == bars[-500:]
    now = page.evaluate("() => { const ts = window.terminal.chart.timeScale(); "
                        "return { logical: ts.getVisibleLogicalRange(), range: ts.getVisibleRange() }; }")
    assert now == zoomed
    ctx.close()


def test_utc_or_local_time_interval_keys_and_the_url(frontend, market, browser):  # noqa: F811
    page, problems = open_page(browser, f"/?symbol={market}&interval=1m", timezone_id="Asia/Kolkata")
    bars = api_bars(market, "1m")
    page.wait_for_function(f"() => window.terminal.bars.length === {len(bars)}")
    t = bars[-1]["time"]
    utc = datetime.fromtimestamp(t, timezone.utc)
    local = utc + timedelta(hours=5, minutes=30)
    first_trade = page.locator("#tape li").first
    trade_ms = int(first_trade.get_attribute("data-ms"))
    trade_utc = datetime.fromtimestamp(trade_ms / 1000, timezone.utc)
    assert page.locator("#tz").inner_text() == "UTC" and page.evaluate("() => window.terminal.utc")
    assert page.evaluate(f"() => window.terminal.formatTick({t}, 3)") == utc.strftime("%H:%M")
    assert first_trade.locator(".t").inner_text() == trade_utc.strftime("%H:%M:%S")
    assert page.locator("#legend-time").inner_text() == utc.strftime("%d %b %y %H:%M")

    page.click("#tz")
    page.wait_for_function("() => !window.terminal.utc")
    assert page.locator("#tz").inner_text() == "Local" and page.locator("#tape-tz").inner_text() == "Local"
    assert page.evaluate(f"() => window.terminal.formatTick({t}, 3)") == local.strftime("%H:%M")
    assert page.evaluate("() => window.terminal.chart.options().localization.timeFormatter"
                         f"({t})") == local.strftime("%d %b %y %H:%M")
    assert first_trade.locator(".t").inner_text() == (trade_utc + timedelta(hours=5, minutes=30)).strftime("%H:%M:%S")
    assert page.locator("#legend-time").inner_text() == local.strftime("%d %b %y %H:%M")
    page.reload()  # remembered
    page.wait_for_function(LOADED)
    assert page.locator("#tz").inner_text() == "Local"
    page.click("#tz")
    page.wait_for_function("() => window.terminal.utc")

    # Keys 1..9: the toolbar's intervals in order; the URL follows.
    page.locator("#chart").click()
    page.keyboard.press("1")
    page.wait_for_function("() => window.terminal.interval === '1s' && !window.terminal.loading")
    assert page.evaluate("() => window.terminal.bars.length") == 500
    page.keyboard.press("5")
    page.wait_for_function("() => window.terminal.interval === '5m' && !window.terminal.loading")
    assert page.evaluate("() => window.terminal.bars") == api_bars(market, "5m")
    assert page.locator("#intervals button[aria-pressed='true']").inner_text() == "5m"
    assert parse_qs(urlparse(page.url).query) == {"symbol": [market], "interval": ["5m"]}
    page.keyboard.press("8")
    page.wait_for_function("() => window.terminal.interval === '1h'")
    shared = page.url
    assert parse_qs(urlparse(shared).query) == {"symbol": [market], "interval": ["1h"]}
    # The shared URL opens the same view.
    other, more_problems = open_page(browser, urlparse(shared).path + "?" + urlparse(shared).query)
    assert other.evaluate("() => [window.terminal.symbol, window.terminal.interval]") == [market, "1h"]
    assert other.locator("#symbol").input_value() == market
    assert other.locator("#intervals button[aria-pressed='true']").inner_text() == "1h"
    assert other.evaluate("() => window.terminal.bars") == api_bars(market, "1h")
    # An unknown interval in a URL: the default, and the URL says so.
    other.goto(f"http://127.0.0.1:{TEST_PORTS.frontend}/?symbol={market}&interval=7m")
    other.wait_for_function(LOADED)
    assert parse_qs(urlparse(other.url).query) == {"symbol": [market], "interval": ["1m"]}
    assert problems == [] and more_problems == []
    page.context.close()
    other.context.close()


def test_status_says_when_the_feed_is_stale(frontend, browser):  # noqa: F811
    symbol = unique("STALE") + "-USDT"
    at = time.time()
    insert_trade(symbol, 1, 100.0, 0.5, at)
    page, problems = open_page(browser, f"/?symbol={symbol}&interval=1s")
    page.wait_for_function("() => window.terminal.pulse === 'live'", timeout=20_000)
    assert page.evaluate("() => window.terminal.feed.newestTradeMs") == int(at * 1000)
    # The stream stays open, no trade comes: "feed stale for N s", N counting up every second.
    page.wait_for_function("() => document.getElementById('pulse').dataset.feed === 'stale'", timeout=40_000)
    pulse = page.locator("#pulse")
    assert pulse.get_attribute("data-state") == "live" and pulse.get_attribute("data-feed") == "stale"
    label = page.locator("#pulse-label").inner_text()
    m = re.fullmatch(r"feed stale for (\d+) s", label)
    assert m and int(m.group(1)) >= 20, label
    first = int(m.group(1))
    wait_for(lambda: int(re.fullmatch(r"feed stale for (\d+) s", page.locator("#pulse-label").inner_text()).group(1))
             >= first + 2, 10, message="the stale count to go up")
    # A trade arrives: live again.
    insert_trade(symbol, 2, 101.0, 0.25, time.time())
    page.wait_for_function("() => !window.terminal.feed.stale && "
                           "document.getElementById('pulse-label').textContent === 'live'", timeout=20_000)
    assert pulse.get_attribute("data-feed") == "fresh"
    assert problems == []
    page.context.close()


def _overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["width"] - 0.5 and b["x"] < a["x"] + a["width"] - 0.5 and
            a["y"] < b["y"] + b["height"] - 0.5 and b["y"] < a["y"] + a["height"] - 0.5)


def more_markets(n: int = 9) -> list[str]:
    """Symbols with a trade 23 h ago and one a minute ago: the watchlist's 24 h changes."""
    rng = random.Random(3)
    names = [f"{unique(base)}-USDT" for base in ("ETH", "SOL", "XRP", "DOGE", "ADA", "TON", "LINK", "AVAX", "DOT")[:n]]
    now_ms = int(time.time() * 1000)
    with _sender() as sender:
        for name in names:
            opened = round(rng.uniform(0.2, 4000), 2)
            for i, (ms, price) in enumerate(((now_ms - 23 * 3600_000, opened),
                                             (now_ms - 60_000, round(opened * rng.uniform(0.9, 1.1), 2)))):
                sender.row(TRADES_TABLE, symbols={"symbol": name, "side": "buy"},
                           columns={"trade_id": i + 1, "price": price, "size": 1.0, "fills": 1,
                                    "received_at": TimestampMicros(ms * 1000)},
                           at=TimestampNanos(ms * 1_000_000))
        sender.flush(transactional=True)
    return names


def test_wide_and_narrow_layouts(frontend, market, browser):  # noqa: F811
    others = more_markets()
    wait_for(lambda: set(others) <= {s["symbol"] for s in get(TEST_PORTS.api, "/symbols")[1]}, 60,
             message="the other markets in /symbols")
    page, problems = open_page(browser, f"/?symbol={market}&interval=1s")
    page.wait_for_function("() => window.terminal.bars.length === 500")
    page.wait_for_function(f"() => window.terminal.watchlist.filter((r) => {others!r}.includes(r.symbol)).length === {len(others)}")
    page.click("#overlays button[data-overlay='ema50']")
    page.wait_for_function("() => window.terminal.pulse === 'live'", timeout=20_000)
    box = page.locator("#chart").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.3)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "terminal-wide.png"))
    wide = {name: page.locator(sel).bounding_box() for name, sel in
            (("header", ".topbar"), ("chart", ".chart-panel"), ("tape", ".tape-panel"), ("watch", ".watch-panel"))}
    assert wide["tape"]["x"] >= wide["chart"]["x"] + wide["chart"]["width"] - 1  # beside the chart
    assert wide["watch"]["x"] == wide["tape"]["x"]  # the watchlist over the tape
    assert wide["watch"]["y"] + wide["watch"]["height"] <= wide["tape"]["y"] + 0.5

    page.set_viewport_size({"width": 380, "height": 800})
    page.wait_for_function("() => document.querySelector('.tape-panel').getBoundingClientRect().top > "
                           "document.querySelector('.chart-panel').getBoundingClientRect().top + 200")
    boxes = {name: page.locator(sel).bounding_box() for name, sel in
             (("header", ".topbar"), ("chart", ".chart-panel"), ("tape", ".tape-panel"), ("watch", ".watch-panel"),
              ("status", ".statusbar"))}
    names = list(boxes)
    for i, a in enumerate(names):
        assert boxes[a]["x"] >= -0.5 and boxes[a]["x"] + boxes[a]["width"] <= 380.5, (a, boxes[a])
        for b in names[i + 1:]:
            assert not _overlap(boxes[a], boxes[b]), (a, boxes[a], b, boxes[b])
    assert boxes["header"]["y"] + boxes["header"]["height"] <= boxes["chart"]["y"] + 0.5
    assert boxes["chart"]["y"] + boxes["chart"]["height"] <= boxes["tape"]["y"] + 0.5  # the tape under the chart
    assert boxes["tape"]["y"] + boxes["tape"]["height"] <= boxes["watch"]["y"] + 0.5  # the watchlist under it
    assert boxes["chart"]["height"] >= 300 and boxes["tape"]["height"] >= 200 and boxes["watch"]["height"] >= 250
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 380  # no sideways page scroll
    # The header wraps: none of its parts overlap one another, all inside the screen.
    parts = page.evaluate("""() => [...document.querySelector('.topbar').children].map((el) => {
        const r = el.getBoundingClientRect(); return { name: el.className, x: r.x, y: r.y, width: r.width, height: r.height };
    })""")
    for i, a in enumerate(parts):
        assert a["x"] >= -0.5 and a["x"] + a["width"] <= 380.5, a
        for b in parts[i + 1:]:
            assert not _overlap(a, b), (a, b)
    # The toolbar scrolls sideways rather than pushing the page wider.
    toolbar = page.evaluate("() => { const t = document.querySelector('.toolbar'); "
                            "return { scroll: t.scrollWidth, client: t.clientWidth, overflow: getComputedStyle(t).overflowX }; }")
    assert toolbar["client"] <= 380 and toolbar["overflow"] == "auto", toolbar
    page.wait_for_function("() => [...document.querySelectorAll('#chart canvas')].some((c) => c.width > 0 && c.width < 380 * 2)")
    page.screenshot(path=str(ARTIFACTS / "terminal-narrow.png"), full_page=True)
    assert problems == []
    page.context.close()

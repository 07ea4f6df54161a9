"""The watchlist, the instrument's precision and the 24 h stats, in Chromium against the real
api and QuestDB: every symbol with trades listed with its last price and 24 h change, kept
live by the stream; a click or the keyboard switches; the search box filters; prices and sizes
with the decimals of OKX's tick and lot size; the header's 24 h figures as the server pushes
them, never summed up in the page."""

from __future__ import annotations

import time

from tests.api.pipeline import get, insert_trade
from tests.api.test_numbers import set_metadata
from tests.conftest import TEST_PORTS, unique, wait_for
from tests.frontend.test_browser import browser  # noqa: F401 (the fixture)
from tests.frontend.test_terminal import open_page

DAY = 86_400


def rows(page, prefix: str) -> list[dict]:
    """The watchlist's visible rows of our symbols, in their order."""
    return [r for r in page.evaluate("() => window.terminal.watchlist") if r["symbol"].startswith(prefix)]


def number(text: str) -> float:
    return float(text.replace(",", "").replace("%", ""))


def test_watchlist_lists_updates_live_switches_and_filters(frontend, browser):  # noqa: F811
    prefix = unique("WL")
    down, up, flat = (f"{prefix}{name}-USDT" for name in ("A", "B", "C"))
    now = time.time()
    # Each symbol: a trade 23 h ago (the 24 h open) and one two minutes ago (the last).
    for symbol, opened, last in ((down, 100.0, 95.25), (up, 100.0, 110.5), (flat, 200.0, 202.0)):
        insert_trade(symbol, 1, opened, 1.0, now - 23 * 3600)
        insert_trade(symbol, 2, last, 1.0, now - 120)
    symbol_requests: list[str] = []

    page, problems = open_page(browser, f"/?symbol={down}&interval=1m")
    page.on("request", lambda r: symbol_requests.append(r.url) if "/api/symbols" in r.url else None)
    page.wait_for_function("() => window.terminal.pulse === 'live'", timeout=20_000)
    page.wait_for_function(f"() => window.terminal.watchlist.filter((r) => r.symbol.startsWith({prefix!r})).length === 3")
    shown = {r["symbol"]: r for r in rows(page, prefix)}
    assert [r["symbol"] for r in rows(page, prefix)] == [down, up, flat]  # by name at first
    assert {s: (number(r["last"]), r["change"]) for s, r in shown.items()} == {
        down: (95.25, "-4.75%"), up: (110.5, "+10.50%"), flat: (202.0, "+1.00%")}
    assert [s for s, r in shown.items() if r["current"]] == [down]
    colour = page.eval_on_selector(f"#watch-{up} .w-chg", "el => getComputedStyle(el).color")
    assert colour == "rgb(38, 166, 154)"
    assert page.eval_on_selector(f"#watch-{down} .w-chg", "el => getComputedStyle(el).color") == "rgb(239, 83, 80)"

    # A trade of another symbol: its row follows without a reload (the stream's tickers), and
    # flashes in the direction of the move.
    insert_trade(up, 3, 121.5, 1.0, time.time())
    page.wait_for_function(f"() => window.terminal.watchlist.some((r) => r.symbol === {up!r} && r.change === '+21.50%')",
                           timeout=20_000)
    assert number(next(r for r in rows(page, prefix) if r["symbol"] == up)["last"]) == 121.5
    assert page.get_attribute(f"#watch-{up}", "data-tick") == "up"
    assert symbol_requests == []  # pushed, not polled

    # Sorted by 24 h change (highest first), then the other way.
    page.click(".watch-head button[data-sort='change']")
    assert [r["symbol"] for r in rows(page, prefix)] == [up, flat, down]
    page.click(".watch-head button[data-sort='change']")
    assert [r["symbol"] for r in rows(page, prefix)] == [down, flat, up]
    assert page.get_attribute(".watch-head button[data-sort='change']", "data-dir") == "asc"

    # A click switches the chart; the URL and the header's picker follow.
    page.click(f"#watch-{flat}")
    page.wait_for_function(f"() => window.terminal.symbol === {flat!r} && !window.terminal.loading"
                           " && window.terminal.bars.length === 2")
    assert f"symbol={flat}" in page.url and page.input_value("#symbol") == flat
    assert [r["symbol"] for r in page.evaluate("() => window.terminal.watchlist") if r["current"]] == [flat]

    # The keyboard: "/" to the search box, a filter (any case, any separator), arrows, Enter.
    page.locator("#chart").click()
    page.keyboard.press("/")
    assert page.evaluate("() => document.activeElement.id") == "watch-search"
    page.keyboard.type(f"{prefix.lower()}b/usdt")
    page.wait_for_function("() => window.terminal.watchlist.length === 1")
    assert [r["symbol"] for r in page.evaluate("() => window.terminal.watchlist")] == [up]
    assert page.locator("#watch-count").inner_text().startswith("1 of ")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => window.terminal.symbol === {up!r} && !window.terminal.loading")
    assert f"symbol={up}" in page.url
    page.keyboard.press("Escape")  # the filter cleared: every symbol again
    page.wait_for_function(f"() => window.terminal.watchlist.filter((r) => r.symbol.startsWith({prefix!r})).length === 3")
    page.fill("#watch-search", prefix)
    page.keyboard.press("ArrowUp")  # from the current symbol (the last, by ascending change) up one
    assert page.get_attribute("#watch-search", "aria-activedescendant") == f"watch-{flat}"
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => window.terminal.symbol === {flat!r}")
    page.fill("#watch-search", "no such thing")
    page.wait_for_function("() => window.terminal.watchlist.length === 0")
    assert page.locator("#watch-empty").is_visible()
    assert symbol_requests == [] and problems == []
    page.context.close()


def test_prices_and_sizes_have_the_instruments_decimals(frontend, browser):  # noqa: F811
    listed, bare = unique("PREC") + "-USDT", unique("BARE") + "-USDT"
    set_metadata(listed, "0.001", "0.0001")
    now = time.time()
    for symbol in (listed, bare):
        insert_trade(symbol, 1, 2.5, 1.2, now - 90)
        insert_trade(symbol, 2, 2.75, 0.5, now - 30)
    # The api holds metadata for a while: until it says so.
    wait_for(lambda: any(s["symbol"] == listed and s["price_precision"] == 3 for s in get(TEST_PORTS.api, "/symbols")[1]),
             60, message=f"/symbols with the metadata of {listed}")

    # The tick size 0.001: three decimals everywhere, the lot size 0.0001: four for sizes.
    page, problems = open_page(browser, f"/?symbol={listed}&interval=1m")
    page.wait_for_function("() => window.terminal.pulse === 'live'", timeout=20_000)
    assert page.evaluate("() => window.terminal.precision") == {"price": 3, "minMove": 0.001, "size": 4}
    assert page.locator("#last-price").inner_text() == "2.750"
    assert page.locator("#legend-close").inner_text() == "2.750"
    assert page.locator("#stat-high").inner_text() == "2.750" and page.locator("#stat-low").inner_text() == "2.500"
    assert page.locator("#tape li .sz").all_inner_texts() == ["0.5000", "1.2000"]
    assert page.evaluate("() => window.terminal.chart.panes()[0].getSeries()[0].options().priceFormat") == \
        {"type": "price", "precision": 3, "minMove": 0.001}
    page.wait_for_function(f"() => window.terminal.watchlist.some((r) => r.symbol === {listed!r} && r.last === '2.750')")

    # Without metadata: the digits the prices come with.
    page.fill("#symbol", bare)
    page.wait_for_function(f"() => window.terminal.symbol === {bare!r} && !window.terminal.loading")
    assert page.evaluate("() => window.terminal.precision") == {"price": 2, "minMove": 0.01, "size": None}
    assert page.locator("#last-price").inner_text() == "2.75"
    assert page.locator("#tape li .sz").all_inner_texts() == ["0.5", "1.2"]
    assert problems == []
    page.context.close()


def test_the_24h_stats_are_the_servers(frontend, browser):  # noqa: F811
    symbol = unique("DAY") + "-USDT"
    now = time.time()
    # The 24 h window ends at the newest trade: one just over a day before the second trade
    # is in it, and falls out when a newer trade comes. A page adding trades up would still
    # count it.
    insert_trade(symbol, 1, 90.5, 1.0, now - DAY - 60)
    insert_trade(symbol, 2, 110.5, 2.0, now - 120)
    stats_requests: list[str] = []

    page, problems = open_page(browser, f"/?symbol={symbol}&interval=1m")
    page.on("request", lambda r: stats_requests.append(r.url) if "/api/stats" in r.url else None)
    page.wait_for_function("() => window.terminal.pulse === 'live'", timeout=20_000)
    assert page.locator("#stat-trades").inner_text() == "2"
    assert page.locator("#stat-volume").inner_text() == "3"
    assert page.locator("#stat-low").inner_text() == "90.5"
    assert page.locator("#stat-change").inner_text() == f"+{20 / 90.5 * 100:.2f}%"

    insert_trade(symbol, 3, 120.5, 4.0, time.time())
    page.wait_for_function("() => window.terminal.stats && window.terminal.stats.last === 120.5", timeout=20_000)
    stats = page.evaluate("() => window.terminal.stats")
    assert (stats["trades"], stats["volume"], stats["open"], stats["low"], stats["high"]) == (2, 6.0, 110.5, 110.5, 120.5)
    assert page.locator("#stat-trades").inner_text() == "2"
    assert page.locator("#stat-volume").inner_text() == "6"
    assert page.locator("#stat-low").inner_text() == "110.5" and page.locator("#stat-high").inner_text() == "120.5"
    assert page.locator("#stat-change").inner_text() == f"+{10 / 110.5 * 100:.2f}%"
    assert page.locator("#stat-change").get_attribute("class") == "up"
    assert page.locator("#last-change").inner_text() == f"+10.0 (+{10 / 110.5 * 100:.2f}%)"
    assert page.locator("#last-price").inner_text() == "120.5"
    assert stats_requests == []  # pushed on the stream, not fetched again
    assert problems == []
    page.context.close()


def test_watchlist_on_a_narrow_screen(frontend, browser):  # noqa: F811
    width = 380
    symbol = unique("NAR") + "-USDT"
    insert_trade(symbol, 1, 10.5, 1.0, time.time() - 60)
    page, problems = open_page(browser, f"/?symbol={symbol}&interval=1m", viewport={"width": width, "height": 800})
    page.wait_for_function(f"() => window.terminal.watchlist.some((r) => r.symbol === {symbol!r})")
    boxes = {name: page.locator(sel).bounding_box() for name, sel in
             (("chart", ".chart-panel"), ("tape", ".tape-panel"), ("watch", ".watch-panel"))}
    # Under the tape, inside the screen, tall enough to use; its rows scroll inside it.
    assert boxes["tape"]["y"] + boxes["tape"]["height"] <= boxes["watch"]["y"] + 0.5
    assert boxes["watch"]["x"] >= -0.5 and boxes["watch"]["x"] + boxes["watch"]["width"] <= width + 0.5
    assert boxes["watch"]["height"] >= 250
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    cells = page.evaluate(f"""() => [...document.querySelectorAll('#watch-{symbol} > span')].map((el) => {{
        const r = el.getBoundingClientRect(); return {{ x: r.x, width: r.width, scroll: el.scrollWidth, client: el.clientWidth }};
    }})""")
    for a, b in zip(cells, cells[1:]):
        assert a["x"] + a["width"] <= b["x"] + 0.5  # symbol, last, change side by side
    page.locator(f"#watch-{symbol}").click()
    wait_for(lambda: page.evaluate("() => true") and page.get_attribute(f"#watch-{symbol}", "aria-selected") == "true",
             10, message="the row marked current")
    assert problems == []
    page.context.close()

"""The terminal's completeness badge in Chromium: trades with a hole written straight into
QuestDB, the ledger row the producer's audit would write, then the hole filled; the badge
follows the visible range through /api/completeness."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

from tests.api.holes import LedgerRow, Row, wait_stored, write_ledger, write_trades
from tests.conftest import ARTIFACTS, TEST_PORTS, sql, unique, wait_for
from tests.frontend.test_browser import browser  # noqa: F401 (the fixture)

HOLE = range(7_000_090, 7_000_102)  # 12 ids


def _view_holds(symbol: str, n: int) -> bool:
    rows = sql(f"SELECT sum(trades) n FROM candles_1m WHERE symbol = '{symbol}'")
    return bool(rows) and rows[0]["n"] == n


def _badge(page) -> tuple[str, str]:
    badge = page.locator("#completeness")
    return badge.inner_text(), badge.get_attribute("data-state")


def test_badge_shows_the_hole_then_turns_green_when_it_is_filled(frontend, browser):  # noqa: F811
    symbol = unique("WEBH") + "-USDT"
    start_ms = (int(time.time()) // 60 - 30) * 60_000  # 30 whole minutes ago
    # 200 rows over 25 minutes, one every 7.5 s; every tenth aggregates 3 fills: 240 ids.
    rows, trade_id = [], 7_000_000
    for k in range(200):
        fills = 3 if k % 10 == 5 else 1
        trade_id += fills
        rows.append(Row(trade_id, start_ms + k * 7_500, fills=fills, price=30_000.0 + (k * 37) % 90))
    missing = [r for r in rows if r.trade_id in HOLE]
    total = sum(r.fills for r in rows)
    assert sum(r.fills for r in missing) == len(HOLE) and any(r.fills > 1 for r in missing)
    assert total == rows[-1].trade_id - rows[0].trade_id + 1 == 240
    kept = [r for r in rows if r.trade_id not in HOLE]
    write_trades(symbol, kept)
    wait_stored(symbol, len(kept))
    found_ms = int(time.time() * 1000)
    write_ledger(symbol, [LedgerRow(HOLE[0], HOLE[-1], "open", found_ms, attempts=1)], updated_ms=found_ms)
    wait_for(lambda: _view_holds(symbol, len(kept)), 60, message="the 1m view to hold the trades")

    page = browser.new_page(viewport={"width": 1440, "height": 860})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    asked: list[dict] = []
    page.on("request", lambda r: asked.append(parse_qs(urlparse(r.url).query)) if "/api/completeness" in r.url else None)
    page.goto(f"http://127.0.0.1:{TEST_PORTS.frontend}/?symbol={symbol}&interval=1m")
    page.wait_for_function("() => window.terminal && !window.terminal.loading && window.terminal.bars.length > 20",
                           timeout=20_000)

    # An open ledger row over the hole: amber, "healing", the numbers in the tooltip.
    wait_for(lambda: _badge(page) == ("12 missing, healing", "healing"), 15, message="the badge to show the open hole")
    answer = page.evaluate("() => window.terminal.completeness")
    assert (answer["symbol"], answer["missing"], answer["complete"]) == (symbol, 12, False)
    assert answer["holes"][0]["first_id"] == HOLE[0] and answer["holes"][0]["state"] == "open"
    # Asked about the bars in view: from the first one's start to the last one's end.
    bars = page.evaluate("() => window.terminal.bars.map((b) => b.time)")
    visible = page.evaluate("() => window.terminal.chart.timeScale().getVisibleRange()")
    assert asked and asked[-1]["symbol"] == [symbol]
    assert (int(asked[-1]["from"][0]), int(asked[-1]["to"][0])) == (visible["from"], visible["to"] + 60)
    assert visible["from"] == bars[0] and visible["to"] == bars[-1]  # every bar fits
    assert answer["expected"] == total  # so every trade is counted
    title = page.locator("#completeness").get_attribute("title")
    assert f"{total - 12} of {total} trade ids stored (95 %)" in title and "12 missing in 1 hole" in title, title
    assert f"{HOLE[0]}..{HOLE[-1]} (12): open, 1 attempts" in title, title
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "terminal-completeness.png"))

    # The audit gives up on it: red. Scrolling the chart asks again (no 30 s wait).
    write_ledger(symbol, [LedgerRow(HOLE[0], HOLE[-1], "unrecoverable", found_ms, attempts=5)],
                 updated_ms=found_ms + 1000)
    before = len(asked)
    page.evaluate("() => window.terminal.chart.timeScale().scrollToPosition(-4, false)")
    wait_for(lambda: _badge(page) == ("12 lost", "lost"), 15, message="the badge to show the hole lost")
    assert len(asked) > before and int(asked[-1]["to"][0]) < int(asked[before - 1]["to"][0])  # the scrolled range

    # The missing trades arrive after all (a late backfill): green, 100 %.
    write_trades(symbol, missing)
    wait_stored(symbol, len(rows))
    write_ledger(symbol, [LedgerRow(HOLE[0], HOLE[-1], "closed", found_ms, attempts=6)], updated_ms=found_ms + 2000)
    page.evaluate("() => window.terminal.chart.timeScale().scrollToRealTime()")
    wait_for(lambda: _badge(page) == ("100 %", "complete"), 15, message="the badge to turn to 100 %")
    assert page.evaluate("() => window.terminal.completeness.stored") == total
    assert f"{total} of {total} trade ids stored (100 %)" in page.locator("#completeness").get_attribute("title")
    page.screenshot(path=str(ARTIFACTS / "terminal-completeness-healed.png"))
    assert problems == []

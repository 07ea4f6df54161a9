"""The symbol picker with hundreds of instruments, in Chromium: every symbol with trades is
offered, typing a name switches the chart, a name that is not there is marked, not loaded."""

from __future__ import annotations

import time

from questdb import TimestampMicros, TimestampNanos

from gostream.common.schema import TRADES_TABLE
from tests.api.holes import _sender
from tests.api.pipeline import get
from tests.conftest import TEST_PORTS, unique, wait_for
from tests.frontend.test_browser import browser  # noqa: F401 (the fixture)
from tests.frontend.test_terminal import open_page

COUNT = 600


def test_hundreds_of_symbols_are_searchable_and_switch_the_chart(api, frontend, browser):  # noqa: F811
    prefix = unique("S")
    names = [f"{prefix}{i:03d}-USDT" for i in range(COUNT)]
    now_ms = int(time.time() * 1000) - 60_000
    with _sender() as sender:
        for i, name in enumerate(names):
            sender.row(TRADES_TABLE, symbols={"symbol": name, "side": "buy"},
                       columns={"trade_id": 1, "price": 1.0 + i, "size": 1.0, "fills": 1,
                                "received_at": TimestampMicros(now_ms * 1000)},
                       at=TimestampNanos(now_ms * 1_000_000))
        sender.flush(transactional=True)
    wait_for(lambda: set(names) <= {s["symbol"] for s in get(TEST_PORTS.api, "/symbols")[1]}, 60,
             message=f"{COUNT} symbols served by /symbols")

    page, problems = open_page(browser, f"/?symbol={names[0]}&interval=1m")
    offered = page.eval_on_selector_all("#symbol-list option", "os => os.map(o => o.value)")
    assert set(names) <= set(offered)
    assert page.input_value("#symbol") == names[0]

    target = names[417]
    box = page.locator("#symbol")
    box.click()
    box.fill(target[:-2])  # a prefix while typing: not a symbol, nothing loads, nothing marked yet
    assert page.evaluate("[window.terminal.symbol, document.querySelector('#symbol').getAttribute('aria-invalid')]") \
        == [names[0], None]
    box.fill(target)  # what picking it from the list does
    page.wait_for_function(f"() => window.terminal.symbol === {target!r} && !window.terminal.loading"
                           " && window.terminal.bars.length === 1")
    assert page.evaluate("window.terminal.bars[0].close") == 418.0
    assert f"symbol={target}" in page.url

    box.fill("NOPE-USDT")
    box.press("Enter")
    page.wait_for_function("() => document.querySelector('#symbol').getAttribute('aria-invalid') === 'true'")
    assert page.evaluate("window.terminal.symbol") == target
    assert problems == []

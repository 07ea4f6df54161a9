"""The terminal's stream in a real browser: a stream that ends is reconnected, an error answer (503: the api holds as many streams as it may) is retried with back-off,
and the page re-opening the stream by hand resumes from the last event id."""

from __future__ import annotations

from tests.api.pipeline import insert_trade
from tests.conftest import TEST_PORTS, unique, wait_for
from tests.frontend.test_browser import browser  # noqa: F401 (the fixture)

MINUTE = 1_704_430_800  # 2024-01-05 05:00:00 UTC


def test_a_full_api_is_retried_and_the_stream_resumes_from_its_last_event_id(frontend, browser):  # noqa: F811
    symbol = unique("RCN") + "-USDT"
    insert_trade(symbol, 1, 100.0, 0.5, MINUTE + 1)
    position = f"{(MINUTE + 1) * 1_000_000}-1"
    requests: list[tuple[str, str | None]] = []
    answers = ["short", "full"]  # then the real api

    def stream(route) -> None:
        if "/api/stream?" not in route.request.url:
            route.continue_()
            return
        requests.append((route.request.url, route.request.all_headers().get("last-event-id")))
        answer = answers.pop(0) if answers else None
        if answer == "short":  # a stream that ends at once: the browser reconnects by itself
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"},
                          body=f'retry: 200\n\nevent: hello\ndata: {{}}\n\nid: {position}\nevent: candle\ndata: {{}}\n\n')
        elif answer == "full":
            route.fulfill(status=503, headers={"Content-Type": "application/json", "Retry-After": "3"},
                          body='{"error": "full"}')
        else:
            route.continue_()

    page = browser.new_page()
    page.route("**/*", stream)
    page.goto(f"http://127.0.0.1:{TEST_PORTS.frontend}/?symbol={symbol}&interval=1m")
    # The sync API delivers events (and runs route handlers) only while it is called: pump it.
    wait_for(lambda: page.wait_for_timeout(100) or len(requests) >= 3, 30,
             message=f"the stream re-opened after the 503 ({requests})")
    assert "last_event_id" not in requests[0][0]
    assert requests[2][0].endswith(f"&last_event_id={position}")  # the page's, by hand
    wait_for(lambda: page.locator("#pulse").get_attribute("data-state") == "live", 30, message="live again")
    assert len(requests) == 3  # resumed: no reload, no further attempt
    page.close()

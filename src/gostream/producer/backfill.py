"""Fetch missing trades from OKX REST ``history-trades``, newest first, paging with ``after``.

Runs in a worker thread (plain urllib: one request at a time, spaced to stay well inside
OKX's 20 requests / 2 s), so the WebSocket loop never waits for it.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request

from gostream.common.trade import RecordError, Trade
from gostream.producer.gaps import Gap
from gostream.producer.okx import parse_trade

log = logging.getLogger(__name__)

PAGE = 100
MIN_SPACING_S = 0.15  # ~13 requests / 2 s, under OKX's 20 / 2 s


class BackfillError(RuntimeError):
    pass


class HistoryClient:
    def __init__(self, rest_url: str, timeout_s: float = 10.0, max_attempts: int = 5) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self._last_request = 0.0

    def page(self, symbol: str, after: int) -> list[dict]:
        """Up to 100 trades with ids below ``after``, newest first."""
        query = urllib.parse.urlencode({"instId": symbol, "type": "1", "after": str(after), "limit": str(PAGE)})
        url = f"{self.rest_url}/api/v5/market/history-trades?{query}"
        delay = 0.5
        for attempt in range(1, self.max_attempts + 1):
            wait = self._last_request + MIN_SPACING_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_request = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                    body = json.load(response)
                if body.get("code") != "0":
                    raise BackfillError(f"OKX answered code {body.get('code')}: {body.get('msg')}")
                return body.get("data") or []
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    raise BackfillError(f"history-trades HTTP {exc.code}") from None
                problem = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            log.warning("history-trades failed, retrying", extra={"attempt": attempt, "error": problem})
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise BackfillError(f"history-trades failed {self.max_attempts} times for {symbol} after={after}")

    def fetch(self, gap: Gap, received_us: int) -> list[Trade]:
        """Every trade of the gap, oldest first. Ids outside it are ignored."""
        found: dict[int, Trade] = {}
        after = gap.last_id + 1
        while True:
            items = self.page(gap.symbol, after)
            if not items:
                break
            for item in items:
                try:
                    trade = parse_trade(item, received_us)
                except RecordError as exc:
                    log.warning("backfilled item rejected", extra={"reason": exc.reason})
                    continue
                if trade.symbol == gap.symbol and gap.first_id <= trade.trade_id <= gap.last_id:
                    found[trade.trade_id] = trade
            ids = [int(item["tradeId"]) for item in items if str(item.get("tradeId", "")).isdigit()]
            if not ids or min(ids) <= gap.first_id or min(ids) >= after:
                break
            after = min(ids)
        return [found[i] for i in sorted(found)]

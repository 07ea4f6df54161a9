"""Trades fetched again over OKX REST ``history-trades``: one worker, one request at a time.

Everything that asks OKX REST for trades shares one budget (OKX allows 20 requests / 2 s
per IP; we stay at ~13) and one queue ordered by priority: live gaps (seen a moment ago on
the WebSocket) before holes from the completeness ledger before anything else. A job runs
one page (100 trades, newest first, paging down with ``after``) per turn and goes back in
the queue, so a live gap never waits for a long ledger fill to finish. A page that fails
(429, 5xx, timeout) puts its job back with a growing delay, without holding up the others.

Found trades go to ``on_trade`` (the publisher: Kafka, then the consumer), so a trade
fetched twice is harmless: QuestDB's DEDUP keeps one.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from gostream.common.trade import Trade
from gostream.producer import metrics
from gostream.producer.okx import parse_history_page

log = logging.getLogger(__name__)

PAGE = 100
MIN_SPACING_S = 0.15  # ~13 requests / 2 s, under OKX's 20 / 2 s
RATE_LIMITED_PAUSE_S = 2.0  # after a 429, nobody asks for this long (OKX's window)


class Priority(IntEnum):
    LIVE = 0  # a gap the WebSocket just revealed
    HOLE = 1  # a hole from the completeness ledger
    HISTORY = 2  # the past before the first stored trade


@dataclass(eq=False)
class Fill:
    """Fetch the trades of ``symbol`` with ids ``first_id..last_id`` (inclusive), or, with
    ``since_ms``, every trade below ``after`` (the newest ones when None) back to that
    exchange time: the history before the first stored trade."""

    symbol: str
    first_id: int
    last_id: int
    priority: Priority
    max_failures: int = 5  # consecutive failed pages before the job gives up
    on_done: Callable[[Fill], object] | None = None
    since_ms: int | None = None
    on_page: Callable[[Fill, int], object] | None = None  # (job, oldest exchange ms so far)
    # progress, read by on_done
    after: int | None = None
    found: int = 0
    pages: int = 0
    failures: int = 0
    exhausted: bool = False  # OKX served nothing below `after`: those ids are beyond its reach
    error: str | None = None
    not_before: float = 0.0
    _seen: set[int] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.after is None and self.since_ms is None:
            self.after = self.last_id + 1

    @classmethod
    def history(cls, symbol: str, since_ms: int, below_id: int | None, **kwargs) -> Fill:
        return cls(symbol, 1, (below_id or 2**63) - 1, Priority.HISTORY, since_ms=since_ms, after=below_id, **kwargs)

    @property
    def size(self) -> int:
        return self.last_id - self.first_id + 1

    @property
    def complete(self) -> bool:
        return self.since_ms is None and self.found >= self.size


class RestUnavailable(Exception):
    """Worth retrying: rate limited, server error, network trouble."""


class RestRefused(Exception):
    """Not worth retrying with the same request."""


class HistoryFetcher:
    """The queue and its worker thread."""

    def __init__(self, rest_url: str, on_trade: Callable[[Trade], object], timeout_s: float = 10.0,
                 min_spacing_s: float = MIN_SPACING_S) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.on_trade = on_trade
        self.timeout_s = timeout_s
        self.min_spacing_s = min_spacing_s
        self._jobs: list[tuple[int, int, Fill]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closing = False
        self._last_request = 0.0
        self._paused_until = 0.0
        self._thread = threading.Thread(target=self._run, name="history", daemon=True)

    def start(self) -> HistoryFetcher:
        self._thread.start()
        return self

    def submit(self, job: Fill) -> Fill:
        with self._cond:
            self._jobs.append((job.priority, next(self._seq), job))
            metrics.REST_QUEUED.labels(job.priority.name.lower()).inc()
            self._cond.notify()
        return job

    def pending(self, symbol: str, first_id: int, last_id: int) -> bool:
        """Whether a queued gap or hole fill already covers any id of that range."""
        with self._cond:
            return any(job.symbol == symbol and job.since_ms is None and job.first_id <= last_id
                       and first_id <= job.last_id for _, _, job in self._jobs)


    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the page in flight; queued jobs are dropped (the audit finds their
        holes again in the store after a restart)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # -- the worker ---------------------------------------------------------------
    def _next(self) -> Fill | None:
        """The most urgent job that may run now, waiting for one; None when closing."""
        with self._cond:
            while not self._closing:
                now = time.monotonic()
                ready = [entry for entry in self._jobs if entry[2].not_before <= now]
                if ready:
                    entry = min(ready, key=lambda e: (e[0], e[1]))
                    self._jobs.remove(entry)
                    return entry[2]
                wake = min((e[2].not_before for e in self._jobs), default=now + 3600)
                self._cond.wait(max(0.01, wake - now))
            return None

    def _requeue(self, job: Fill) -> None:
        with self._cond:
            self._jobs.append((job.priority, next(self._seq), job))
            self._cond.notify()

    def _run(self) -> None:
        while (job := self._next()) is not None:
            try:
                finished = self._turn(job)
            except Exception as exc:  # never let one job stop the worker
                log.exception("history job failed", extra={"symbol": job.symbol})
                job.error, finished = f"{type(exc).__name__}: {exc}", True
            if not finished:
                self._requeue(job)
                continue
            metrics.REST_QUEUED.labels(job.priority.name.lower()).dec()
            if job.on_done is not None:
                try:
                    job.on_done(job)
                except Exception:
                    log.exception("history job callback failed", extra={"symbol": job.symbol})

    def _turn(self, job: Fill) -> bool:
        """One page of ``job``; True when the job is finished (done, exhausted or failed)."""
        purpose = job.priority.name.lower()
        try:
            body = self._get(job.symbol, job.after)
        except RestUnavailable as exc:
            metrics.REST_REQUESTS.labels(purpose, "unavailable").inc()
            job.failures += 1
            if job.failures >= job.max_failures:
                job.error = f"{job.failures} failed requests in a row, last: {exc}"
                return True
            delay = min(0.5 * 2 ** job.failures, 30.0)
            job.not_before = time.monotonic() + delay
            log.warning("history-trades failed, retrying", extra={"symbol": job.symbol, "error": str(exc),
                                                                 "retry_in_s": delay})
            return False
        except RestRefused as exc:
            metrics.REST_REQUESTS.labels(purpose, "refused").inc()
            job.error = str(exc)
            return True
        page = parse_history_page(body, time.time_ns() // 1000)
        if page.error is not None:
            metrics.REST_REQUESTS.labels(purpose, "unavailable").inc()
            job.failures += 1
            job.error = page.error
            if job.failures >= job.max_failures:
                return True
            job.not_before = time.monotonic() + min(0.5 * 2 ** job.failures, 30.0)
            return False
        metrics.REST_REQUESTS.labels(purpose, "ok").inc()
        job.failures, job.error = 0, None
        job.pages += 1
        for reason in page.rejected:
            metrics.FRAMES_REJECTED.labels(reason).inc()
            log.warning("history-trades item rejected", extra={"reason": reason, "symbol": job.symbol})
        oldest_ms = None
        for trade in page.trades:
            if trade.symbol == job.symbol and job.first_id <= trade.trade_id <= job.last_id \
                    and trade.trade_id not in job._seen and (job.since_ms is None or trade.ts_ms >= job.since_ms):
                job._seen.add(trade.trade_id)
                job.found += 1
                metrics.BACKFILLED.labels(trade.symbol).inc()
                self.on_trade(trade)
            oldest_ms = trade.ts_ms if oldest_ms is None else min(oldest_ms, trade.ts_ms)
        if job.on_page is not None and oldest_ms is not None:
            job.on_page(job, oldest_ms)
        if page.oldest_id is None:
            job.exhausted = True  # nothing at all below `after`
            return True
        if job.since_ms is not None and oldest_ms is not None and oldest_ms < job.since_ms:
            return True  # reached the start of the window
        if job.complete or page.oldest_id <= job.first_id:
            return True
        if job.after is not None and page.oldest_id >= job.after:
            job.error = f"history-trades did not page below {job.after}"
            return True
        job.after = page.oldest_id
        return False

    def _get(self, symbol: str, after: int | None) -> bytes:
        now = time.monotonic()
        wait = max(self._last_request + self.min_spacing_s, self._paused_until) - now
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()
        params = {"instId": symbol, "type": "1", "limit": str(PAGE)}
        if after is not None:  # without: the newest trades
            params["after"] = str(after)
        query = urllib.parse.urlencode(params)
        url = f"{self.rest_url}/api/v5/market/history-trades?{query}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 429:
                self._paused_until = time.monotonic() + RATE_LIMITED_PAUSE_S
                raise RestUnavailable("HTTP 429 (rate limited)") from None
            if exc.code >= 500:
                raise RestUnavailable(f"HTTP {exc.code}") from None
            raise RestRefused(f"HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:  # refused, reset, timeout, bad URL
            raise RestUnavailable(f"{type(exc).__name__}: {exc}") from None

"""Live trades and forming candles for /stream (Server-Sent Events).

One ``Feed`` per symbol (per worker process) polls QuestDB for trades newer than the
last it saw, a cheap interval scan on the designated timestamp, and fans each batch
out to that symbol's subscribers. For every interval somebody watches, it recomputes
the candle of each bucket the batch touched (trades for the current minute, the 1m
view for whole minutes before), so what the browser draws is what /candles would say.
A feed stops a while after its last subscriber leaves.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator

from gostream.api import market, metrics
from gostream.api.db import Database, Unavailable
from gostream.api.queries import Interval

log = logging.getLogger(__name__)

US = market.US
QUEUE_SIZE = 256  # batches a slow client may fall behind before it is cut off
CATCH_UP = 100  # candles a client joining with ?since= is sent at most; further behind, reload
LINGER_S = 10.0  # a feed with no subscribers polls this long before it stops


class Subscription:
    def __init__(self, feed: Feed, interval: Interval) -> None:
        self.feed = feed
        self.interval = interval
        self.events: queue.Queue = queue.Queue(QUEUE_SIZE)
        self.overflowed = False

    def put(self, event: tuple[str, object]) -> None:
        try:
            self.events.put_nowait(event)
        except queue.Full:
            self.overflowed = True

    def close(self) -> None:
        self.feed.unsubscribe(self)


class Feed:
    def __init__(self, hub: Hub, symbol: str) -> None:
        self.hub = hub
        self.db = hub.db
        self.symbol = symbol
        self.subscribers: set[Subscription] = set()
        self.lock = threading.Lock()
        self.priming = threading.Lock()
        self.since_us: int | None = None  # the latest trade time seen
        self.seen_at_since: set[int] = set()  # ids of the trades at exactly that time
        self.healthy = True
        self.idle_since: float | None = None
        self.thread = threading.Thread(target=self._run, name=f"feed-{symbol}", daemon=True)

    # -- subscribers ----------------------------------------------------------
    def subscribe(self, interval: Interval) -> Subscription:
        sub = Subscription(self, interval)
        with self.lock:
            self.subscribers.add(sub)
            self.idle_since = None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self.lock:
            self.subscribers.discard(sub)
            if not self.subscribers:
                self.idle_since = time.monotonic()

    def _snapshot(self) -> list[Subscription]:
        with self.lock:
            return list(self.subscribers)

    # -- polling --------------------------------------------------------------
    def prime(self) -> None:
        """Start from the symbol's latest trade, once (raises Unavailable). The first
        subscriber's request calls it before reading the candles it starts with, so no
        trade falls between those and the feed's first poll; the feed's thread too."""
        with self.priming:
            if self.since_us is not None:
                return
            latest = market.last_trade(self.db, self.symbol)
            if latest is None:
                # Nothing yet: watch from a little before now (not from the beginning of
                # time, which would scan the whole table on every poll).
                self.seen_at_since, self.since_us = set(), int((time.time() - 300) * US)
                return
            self.seen_at_since = {row[1] for row in market.new_trades(self.db, self.symbol, latest[0])}
            self.since_us = latest[0]

    def _run(self) -> None:
        poll_s = self.hub.poll_s
        backoff = poll_s
        while not self.hub.stopping.is_set():
            with self.lock:
                if not self.subscribers and self.idle_since and time.monotonic() - self.idle_since > LINGER_S:
                    self.hub.forget(self)
                    return
            try:
                self.prime()
                self._poll()
                if not self.healthy:
                    self.healthy = True
                    self._broadcast(("status", {"ok": True}))
                backoff = poll_s
            except Unavailable as exc:
                if self.healthy:
                    self.healthy = False
                    self._broadcast(("status", {"ok": False, "error": str(exc)}))
                backoff = min(backoff * 2, 5.0)
            except Exception:  # never let one bad poll kill the feed
                log.exception("stream poll failed", extra={"symbol": self.symbol})
                backoff = min(backoff * 2, 5.0)
            self.hub.stopping.wait(backoff)

    def _poll(self) -> None:
        rows = market.new_trades(self.db, self.symbol, self.since_us)
        fresh = [row for row in rows if not (row[0] == self.since_us and row[1] in self.seen_at_since)]
        if not fresh:
            return
        newest = fresh[-1][0]
        at_newest = {row[1] for row in fresh if row[0] == newest}
        self.seen_at_since = (self.seen_at_since | at_newest) if newest == self.since_us else at_newest
        self.since_us = newest
        subscribers = self._snapshot()
        if not subscribers:
            return
        trades = [market._trade(row) for row in fresh]
        for sub in subscribers:
            sub.put(("trades", trades))
        # The candles of every bucket these trades fell in, once per watched interval.
        for interval in {sub.interval for sub in subscribers}:
            latest_in_bucket: dict[int, int] = {}
            for row in fresh:
                bucket = row[0] // US // interval.seconds * interval.seconds
                latest_in_bucket[bucket] = max(latest_in_bucket.get(bucket, 0), row[0])
            for bucket in sorted(latest_in_bucket):
                candle = market.bucket_candle(self.db, self.symbol, interval, bucket, latest_in_bucket[bucket])
                if candle:
                    for sub in subscribers:
                        if sub.interval is interval:
                            sub.put(("candle", candle))

    def _broadcast(self, event: tuple[str, object]) -> None:
        for sub in self._snapshot():
            sub.put(event)


class Hub:
    """The feeds of one worker process."""

    def __init__(self, db: Database, poll_ms: int, keepalive_s: float) -> None:
        self.db = db
        self.poll_s = poll_ms / 1000
        self.keepalive_s = keepalive_s
        self.feeds: dict[str, Feed] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def subscribe(self, symbol: str, interval: Interval) -> Subscription:
        with self.lock:
            feed = self.feeds.get(symbol)
            new = feed is None
            if new:
                feed = self.feeds[symbol] = Feed(self, symbol)
            sub = feed.subscribe(interval)
            if new:
                feed.thread.start()
        return sub

    def forget(self, feed: Feed) -> None:
        with self.lock:
            if self.feeds.get(feed.symbol) is feed:
                del self.feeds[feed.symbol]

    def stop(self) -> None:
        self.stopping.set()


def _event(name: str, data: object) -> bytes:
    metrics.STREAM_EVENTS.labels(name).inc()
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def sse(sub: Subscription, initial: list[tuple[str, object]]) -> Iterator[bytes]:
    """The event stream of one subscribed client: hello, the events to start with (candles,
    trades), then trades and candle updates as they land; a comment line every keep-alive
    period."""
    hub = sub.feed.hub
    metrics.STREAMS.inc()
    try:
        yield b"retry: 2000\n\n"
        yield _event("hello", {"symbol": sub.feed.symbol, "interval": sub.interval.name,
                               "poll_ms": int(hub.poll_s * 1000)})
        for name, data in initial:
            yield _event(name, data)
        last_write = time.monotonic()
        while not hub.stopping.is_set():
            if sub.overflowed:
                yield _event("status", {"ok": False, "error": "client too slow, reconnect"})
                return
            try:
                name, data = sub.events.get(timeout=1.0)
            except queue.Empty:
                if time.monotonic() - last_write >= hub.keepalive_s:
                    yield b": keep-alive\n\n"
                    last_write = time.monotonic()
                continue
            yield _event(name, data)
            last_write = time.monotonic()
    finally:
        sub.close()
        metrics.STREAMS.dec()

"""Live trades and forming candles for /stream (Server-Sent Events).

One ``Feed`` per symbol (per worker process) polls QuestDB for the trades after the last
it saw, paging on (timestamp, trade_id), a total order, so no millisecond holds it up
however many fills it has. Each batch is encoded once, per watched interval, into the bytes
every stream of that symbol writes: the candle of each bucket the batch
touched (trades for the current minute, the 1m view for whole minutes before, so what the
browser draws is what /candles would say), the ``trades`` event last, with an ``id:``, the
feed's position (``<µs>-<trade id>``). A stream resumes from such an id (Last-Event-ID) exactly where it
left off.

Trades can land below a feed's position: REST fills of live gaps and the holes the
producer's audit heals. A feed watches the holes in the trade ids it delivered (OKX ids are
consecutive per instrument) and the open holes of the audit's ledger, and sends what fills
them as ``late`` events with the candles of the buckets they fall in.

Two more events ride on every stream, each made once per worker: ``stats`` (the /stats
of the stream's symbol, made by its feed at most once a second after trades changed it)
and ``tickers`` (every symbol's last price and 24 h change for a watchlist: in full when a
stream starts, then only the symbols that changed, at most once a second; one query for
all symbols, by one thread per worker, written into every feed's log).

A stream is a few kilobytes: under gevent (see gunicorn_conf) it is a greenlet waiting on
its feed's tick, and the feed keeps the last batches for every stream to read from. A
symbol without trades gets no feed: its streams wait in one room polled for all of them,
and are told to ``reload`` when trades arrive. A feed stops a while after its last stream.

One lock per hub guards feeds, subscriptions and positions, and is never held across a
query (one lock: no order to get wrong, tests/api/test_stream_correctness.py checks).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterator

from gostream.api import market, metrics
from gostream.api import queries as q
from gostream.api.db import Database, Unavailable
from gostream.api.queries import Interval

log = logging.getLogger(__name__)

US = market.US
PAGE = 1000  # trades one poll reads at most; a full page is followed by another at once
LOG_BATCHES = 512  # batches a feed keeps: how far a slow stream may fall behind before it is cut off
CATCH_UP = 100  # candles a stream starting from ?since= or resuming is sent at most; further behind: reload
RESUME_MAX = 5000  # trades a resuming stream is sent at most; further behind: reload
LINGER_S = 10.0  # a feed with no streams polls this long before it stops
HOLE_CHECK_S = 1.0  # how often a feed looks for trades that filled the holes it watches
LEDGER_CHECK_S = 10.0  # how often it reads the audit's open holes
HOLE_MAX_IDS = 10_000  # larger holes are not watched (their fills show on reload)
MAX_HOLES = 32
HOLE_WATCH_S = 3600.0  # a hole nobody fills is forgotten after this long
WAITING_CHECK_S = 1.0  # how often symbols without trades are looked at again
MAX_WAITING_SYMBOLS = 256
STATS_EVERY_S = 1.0  # a feed sends its symbol's stats at most this often (after trades changed them)
TICKERS_EVERY_S = 1.0  # the tickers are read this often while streams are open

Cursor = tuple[int, int]  # (timestamp µs, trade id): a position in a symbol's trades
_EVENT_ID = re.compile(r"^([0-9]{1,19})-(-1|[0-9]{1,19})$")


def event_id(cursor: Cursor) -> str:
    return f"{cursor[0]}-{cursor[1]}"


def parse_event_id(text: str) -> Cursor | None:
    found = _EVENT_ID.match(text.strip())
    return (int(found.group(1)), int(found.group(2))) if found else None


def encode_event(name: str, data: object) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def with_id(block: bytes, cursor: Cursor) -> bytes:
    """An event block carrying the position: browsers keep the id only of an event with
    data, so it rides on the last event of a batch (a stream cut inside a batch resumes
    before it)."""
    return f"id: {event_id(cursor)}\n".encode() + block


KEEPALIVE = b": keep-alive\n\n"


class Subscription:
    def __init__(self, hub: Hub, feed: Feed, interval: Interval, start: Cursor, next_seq: int) -> None:
        self.hub = hub
        self.feed = feed
        self.interval = interval
        self.start = start  # the feed's position when it subscribed: batches after it come from the feed
        self.next_seq = next_seq
        self.closed = False

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Hole:
    def __init__(self, first: int, last: int, after_us: int, before_us: int) -> None:
        self.first, self.last, self.after_us, self.before_us = first, last, after_us, before_us
        self.seen: set[int] = set()
        self.filled = 0
        self.since = time.monotonic()


class Feed:
    def __init__(self, hub: Hub, symbol: str, cursor: Cursor) -> None:
        self.hub = hub
        self.db = hub.db
        self.symbol = symbol
        self.cursor = cursor
        self.last_id = cursor[1]
        self.subscribers = 0
        self.intervals: dict[str, tuple[Interval, int]] = {}  # name -> (interval, streams)
        self.log: deque[tuple[int, bytes, dict[str, bytes]]] = deque(maxlen=LOG_BATCHES)
        self.seq = 0  # of the newest batch
        self.tick = threading.Event()  # replaced and set on every batch: wakes every stream at once
        self.healthy = True
        self.idle_since: float | None = None
        self.holes: list[Hole] = []
        # What streams starting at the current position are sent first, made once for all of
        # them: a desk opening thousands of terminals at once asks QuestDB once, not
        # thousands of times through a pool of 16 connections. Cleared on every batch.
        self.heads: dict[tuple, list] = {}
        self.stats_block: bytes | None = None  # the last stats event sent
        self.stats_due = True  # trades came since it was made
        self.thread = threading.Thread(target=self._run, name=f"feed-{symbol}", daemon=True)

    # -- streams (hub lock held) ------------------------------------------------
    def _add(self, interval: Interval) -> Subscription:
        self.subscribers += 1
        known, n = self.intervals.get(interval.name, (interval, 0))
        self.intervals[interval.name] = (known, n + 1)
        self.idle_since = None
        return Subscription(self.hub, self, interval, self.cursor, self.seq + 1)

    def _remove(self, sub: Subscription) -> None:
        self.subscribers -= 1
        known, n = self.intervals[sub.interval.name]
        if n > 1:
            self.intervals[sub.interval.name] = (known, n - 1)
        else:
            del self.intervals[sub.interval.name]
        if not self.subscribers:
            self.idle_since = time.monotonic()

    def shared(self, key: tuple, make):
        """``make()`` once for every caller with the same ``key`` at the same position."""
        with self.hub.lock:
            key = (key, self.seq)
            entry = self.heads.get(key)
            mine = entry is None
            if mine:
                entry = self.heads[key] = [threading.Event(), None, None]
        if mine:
            try:
                entry[1] = make()
            except BaseException as exc:
                entry[2] = exc
                with self.hub.lock:
                    self.heads.pop(key, None)  # the next caller tries again
                raise
            finally:
                entry[0].set()
            return entry[1]
        entry[0].wait()
        if entry[2] is not None:
            raise entry[2]
        return entry[1]

    def _publish(self, common: bytes, per_interval: dict[str, bytes], counts: dict[str, int]) -> None:
        self.heads.clear()
        self.seq += 1
        self.log.append((self.seq, common, per_interval))
        for name, n in counts.items():
            metrics.STREAM_EVENTS.labels(name).inc(n * self.subscribers)
        tick, self.tick = self.tick, threading.Event()
        tick.set()

    def read(self, sub: Subscription) -> tuple[list[bytes], bool]:
        """The batches a stream has not written yet, and whether it fell too far behind."""
        with self.hub.lock:
            if sub.next_seq > self.seq:
                return [], False
            first = self.log[0][0]
            if sub.next_seq < first:
                return [], True
            name = sub.interval.name
            out = [per.get(name, b"") + common for _, common, per in
                   itertools.islice(self.log, sub.next_seq - first, None)]
            sub.next_seq = self.seq + 1
            return out, False

    # -- polling ----------------------------------------------------------------
    def _run(self) -> None:
        hub = self.hub
        backoff = hub.poll_s
        next_ledger = next_holes = next_stats = 0.0
        while not hub.stopping.is_set():
            with hub.lock:
                if not self.subscribers and self.idle_since is not None \
                        and time.monotonic() - self.idle_since >= LINGER_S:
                    if hub.feeds.get(self.symbol) is self:
                        del hub.feeds[self.symbol]
                    metrics.STREAM_FEEDS.dec()
                    return
            more = False
            try:
                more = self._poll()
                now = time.monotonic()
                if now >= next_ledger:
                    next_ledger = now + LEDGER_CHECK_S
                    self._ledger()
                if self.holes and now >= next_holes:
                    next_holes = now + HOLE_CHECK_S
                    self._check_holes()
                if self.stats_due and now >= next_stats and not more:
                    next_stats = now + STATS_EVERY_S
                    self._send_stats()
                if not self.healthy:
                    self.healthy = True
                    self._status({"ok": True})
                backoff = hub.poll_s
            except Unavailable as exc:
                if self.healthy:
                    self.healthy = False
                    self._status({"ok": False, "error": str(exc)})
                backoff = min(backoff * 2, 5.0)
            except Exception:  # never let one bad poll kill the feed
                log.exception("stream poll failed", extra={"symbol": self.symbol})
                backoff = min(backoff * 2, 5.0)
            hub.stopping.wait(0 if more else backoff)

    def _send_stats(self) -> None:
        block = encode_event("stats", market.stats(self.db, self.symbol))
        self.stats_due = False
        with self.hub.lock:
            if block != self.stats_block:
                self.stats_block = block
                self._publish(block, {}, {"stats": 1})

    def stats_now(self) -> bytes:
        """The stats event a starting stream is sent: the last one made, or made now (once
        for every stream starting before the feed made one)."""
        return self.stats_block or self.shared(("stats",), lambda: encode_event("stats", market.stats(self.db, self.symbol)))

    def _status(self, body: dict) -> None:
        with self.hub.lock:
            self._publish(encode_event("status", body), {}, {"status": 1})

    def _poll(self) -> bool:
        """Send the trades after the position; True if there may be more right away."""
        rows = market.trades_after(self.db, self.symbol, self.cursor, PAGE)
        if not rows:
            return False
        self._note_holes(rows)
        cursor = (rows[-1][0], rows[-1][1])
        common, per_interval, counts = self._batch("trades", rows, cursor[0])
        with self.hub.lock:
            self.cursor = cursor
            self._publish(with_id(common, cursor), per_interval, counts)
        self.stats_due = True
        return len(rows) == PAGE

    def _batch(self, name: str, rows: list[tuple], latest_us: int) -> tuple[bytes, dict[str, bytes], dict[str, int]]:
        """The events of a batch of rows: the trades, and per watched interval the candles of
        the buckets they fall in."""
        with self.hub.lock:
            intervals = [interval for interval, _ in self.intervals.values()]
        common = encode_event(name, [market._trade(row) for row in rows])
        per_interval: dict[str, bytes] = {}
        candles = 0
        for interval in intervals:
            latest_in_bucket: dict[int, int] = {}
            for row in rows:
                bucket = row[0] // US // interval.seconds * interval.seconds
                latest_in_bucket[bucket] = max(latest_in_bucket.get(bucket, 0), row[0])
            parts = []
            for bucket in sorted(latest_in_bucket):
                candle = market.bucket_candle(self.db, self.symbol, interval, bucket, max(latest_us, latest_in_bucket[bucket]))
                if candle:
                    parts.append(encode_event("candle", candle))
            per_interval[interval.name] = b"".join(parts)
            candles = max(candles, len(parts))
        return common, per_interval, {name: 1, "candle": candles}

    # -- trades written late ------------------------------------------------------
    def _note_holes(self, rows: list[tuple]) -> None:
        """Ids skipped between consecutive trades are a hole whose trades may still come."""
        previous_us = self.cursor[0]
        for t, trade_id, *_, fills in rows:
            first = trade_id - max(int(fills or 1), 1) + 1
            if 0 <= self.last_id and self.last_id + 1 < first <= self.last_id + 1 + HOLE_MAX_IDS:
                self._watch(Hole(self.last_id + 1, first - 1, previous_us, t))
            self.last_id = max(self.last_id, trade_id)
            previous_us = t

    def _watch(self, hole: Hole) -> None:
        if any(h.first == hole.first and h.last == hole.last for h in self.holes):
            return
        self.holes.append(hole)
        del self.holes[:-MAX_HOLES]

    def _ledger(self) -> None:
        try:
            rows = self.db.query(q.LEDGER_OPEN, {"symbol": self.symbol, "limit": MAX_HOLES})
        except Unavailable:  # no ledger (yet): the holes seen in the feed still count
            return
        for first, last, after_us, before_us in rows:
            if after_us is not None and before_us is not None and 0 <= last - first < HOLE_MAX_IDS:
                self._watch(Hole(first, last, after_us, before_us))

    def _check_holes(self) -> None:
        late: list[tuple] = []
        for hole in list(self.holes):
            rows = self.db.query(q.HOLE_TRADES, {"symbol": self.symbol, "lo": hole.after_us, "hi": hole.before_us,
                                                 "first": hole.first, "last": hole.last,
                                                 "limit": hole.last - hole.first + 1})
            for row in rows:
                if row[1] not in hole.seen:
                    hole.seen.add(row[1])
                    hole.filled += max(int(row[5] or 1), 1)
                    late.append(row)
            if hole.filled >= hole.last - hole.first + 1 or time.monotonic() - hole.since > HOLE_WATCH_S:
                self.holes.remove(hole)
        if late:
            late.sort(key=lambda row: (row[0], row[1]))
            common, per_interval, counts = self._batch("late", late, self.cursor[0])
            with self.hub.lock:
                self._publish(common, per_interval, counts)
            self.stats_due = True


class Tickers:
    """Every symbol's last price (its latest 1m close) and change over the 1m candles of the
    last 24 h, for every stream of a worker: read by one thread once a second (one query for
    all symbols; the 24 h opens once a minute), the changed ones written into every feed's
    log. Runs while streams are open."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.current: dict[str, dict] = {}
        self.full: bytes | None = None  # what a starting stream is sent
        self.opens: dict[str, float] = {}
        self.opens_since: int | None = None
        self.lock = threading.Lock()  # one first read
        self.thread: threading.Thread | None = None

    def head(self) -> bytes:
        """Every ticker, as a starting stream's ``tickers`` event (read now if need be)."""
        if self.full is None:
            with self.lock:
                if self.full is None:
                    self.current = self._read()
                    self.full = self._encode(True, list(self.current.values()))
        with self.hub.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="stream-tickers", daemon=True)
                self.thread.start()
        return self.full

    @staticmethod
    def _encode(full: bool, tickers: list[dict]) -> bytes:
        return encode_event("tickers", {"full": full, "tickers": tickers})

    def _read(self) -> dict[str, dict]:
        db = self.hub.db
        rows = db.query(q.SYMBOLS)
        since = market.day_start_us()
        if since != self.opens_since or any(row[0] not in self.opens for row in rows if row[0] not in self.current):
            self.opens = {symbol: opened for symbol, opened in db.query(q.OPENS_SINCE, {"since": since})}
            self.opens_since = since
        meta = market.instruments(db)
        out = {}
        for symbol, close, t in rows:
            last = market.digits_of(meta.get(symbol)).price(close)
            out[symbol] = {"symbol": symbol, "last": last, "change_pct": market.percent(close, self.opens.get(symbol)),
                           "time": t // US}
        return out

    def _run(self) -> None:
        hub = self.hub
        idle_since = None
        while not hub.stopping.wait(TICKERS_EVERY_S):
            with hub.lock:
                if hub.streams:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= LINGER_S:
                    self.thread = None
                    self.full = None  # read afresh by the next stream
                    return
            try:
                now = self._read()
            except Unavailable:
                continue
            except Exception:  # never let one bad read stop the tickers
                log.exception("tickers read failed")
                continue
            changed = [ticker for symbol, ticker in now.items() if self.current.get(symbol) != ticker]
            self.current = now
            self.full = self._encode(True, list(now.values()))
            if changed:
                block = self._encode(False, changed)
                with hub.lock:
                    for feed in hub.feeds.values():
                        feed._publish(block, {}, {"tickers": 1})


class Hub:
    """The feeds of one worker process, and its count of open streams."""

    def __init__(self, db: Database, poll_ms: int, keepalive_s: float, max_streams: int = 10_000) -> None:
        self.db = db
        self.poll_s = poll_ms / 1000
        self.keepalive_s = keepalive_s
        self.max_streams = max_streams
        self.streams = 0
        self.feeds: dict[str, Feed] = {}
        self.waiting: dict[str, threading.Event] = {}  # symbols without trades -> set when they have some
        self.waiting_thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.tickers = Tickers(self)

    # -- the stream cap -------------------------------------------------------------
    def admit(self) -> bool:
        with self.lock:
            if self.streams >= self.max_streams:
                return False
            self.streams += 1
            return True

    def release(self) -> None:
        with self.lock:
            self.streams -= 1

    # -- subscriptions ----------------------------------------------------------------
    def subscribe(self, symbol: str, interval: Interval) -> Subscription | None:
        """A subscription to the symbol's feed (started if need be), or None when the symbol
        has no trades (raises Unavailable)."""
        while True:
            with self.lock:
                feed = self.feeds.get(symbol)
                if feed is not None:
                    return feed._add(interval)
            cursor = market.last_cursor(self.db, symbol)  # no lock held across a query
            if cursor is None:
                return None
            with self.lock:
                if symbol in self.feeds:
                    continue  # another request started it meanwhile
                feed = self.feeds[symbol] = Feed(self, symbol, cursor)
                sub = feed._add(interval)
            metrics.STREAM_FEEDS.inc()
            feed.thread.start()
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self.lock:
            if not sub.closed:
                sub.closed = True
                sub.feed._remove(sub)

    # -- symbols without trades ---------------------------------------------------------
    def wait_for_trades(self, symbol: str) -> threading.Event | None:
        """An event set once the symbol has trades (None: too many such symbols waiting)."""
        with self.lock:
            ready = self.waiting.get(symbol)
            if ready is None:
                if len(self.waiting) >= MAX_WAITING_SYMBOLS:
                    return None
                ready = self.waiting[symbol] = threading.Event()
            if self.waiting_thread is None:
                self.waiting_thread = threading.Thread(target=self._watch_waiting, name="stream-waiting", daemon=True)
                self.waiting_thread.start()
            return ready

    def _watch_waiting(self) -> None:
        while not self.stopping.wait(WAITING_CHECK_S):
            with self.lock:
                symbols = tuple(self.waiting)
                if not symbols:
                    self.waiting_thread = None
                    return
            try:
                found = {row[0] for row in self.db.query(q.HAVE_TRADES, {"symbols": symbols})}
            except Unavailable:
                continue
            with self.lock:
                for symbol in found:
                    ready = self.waiting.pop(symbol, None)
                    if ready is not None:
                        ready.set()

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            ticks = [feed.tick for feed in self.feeds.values()] + list(self.waiting.values())
        for tick in ticks:
            tick.set()


class Ticket:
    """One admitted stream: released once, whichever way the response ends."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.sub: Subscription | None = None
        self.done = False

    def release(self) -> None:
        if not self.done:
            self.done = True
            if self.sub is not None:
                self.sub.close()
            self.hub.release()


def hello(symbol: str, interval: Interval, hub: Hub) -> bytes:
    """What every stream starts with: the retry delay, ``hello``, the symbol's ``stats``
    (when it has trades) and every symbol's ``tickers``."""
    parts = [b"retry: 2000\n\n", encode_event("hello", {"symbol": symbol, "interval": interval.name,
                                                       "poll_ms": int(hub.poll_s * 1000)})]
    with hub.lock:
        feed = hub.feeds.get(symbol)
    if feed is not None:
        parts.append(feed.stats_now())
    parts.append(hub.tickers.head())
    return b"".join(parts)


def sse(ticket: Ticket, head: bytes) -> Iterator[bytes]:
    """The event stream of one subscribed client: what it starts with (``head``: hello, its
    candles and trades, the position it starts from), then its feed's batches as they land;
    a comment line every keep-alive period without one."""
    sub = ticket.sub
    hub, feed = sub.hub, sub.feed
    metrics.STREAMS.inc()
    try:
        yield head
        last_write = time.monotonic()
        while not hub.stopping.is_set():
            tick = feed.tick  # before reading: a batch published after the read sets this one
            chunks, behind = feed.read(sub)
            if behind:
                # The client reconnects with Last-Event-ID and gets what it missed.
                yield encode_event("status", {"ok": False, "error": "client too slow, reconnect"})
                return
            if chunks:
                yield b"".join(chunks)
                last_write = time.monotonic()
                continue
            quiet = time.monotonic() - last_write
            if quiet >= hub.keepalive_s:
                yield KEEPALIVE
                last_write = time.monotonic()
                continue
            tick.wait(hub.keepalive_s - quiet)
    finally:
        metrics.STREAMS.dec()
        ticket.release()


def waiting_sse(ticket: Ticket, head: bytes, ready: threading.Event) -> Iterator[bytes]:
    """The stream of a symbol without trades: keep-alives until it has some, then ``reload``
    (the client loads its candles and opens the stream again, now on a feed)."""
    hub = ticket.hub
    metrics.STREAMS.inc()
    try:
        yield head
        while not hub.stopping.is_set():
            if ready.wait(hub.keepalive_s):
                if not hub.stopping.is_set():
                    yield encode_event("reload", {"reason": "the symbol has trades now"})
                return
            yield KEEPALIVE
    finally:
        metrics.STREAMS.dec()
        ticket.release()

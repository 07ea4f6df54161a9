"""A response cache for /candles: bounded staleness, single flight, stale-while-revalidate.

Many clients ask for the same candles (dashboards and scripts polling one range, every
terminal reloading at once after a restart); without a cache each of them costs a QuestDB
query and building a 100-200 kB JSON body. Closed candles are not immutable here: after a reconnect the producer
backfills missed trades from OKX REST, and they land in minutes that had closed. So a
body is never served once it is older than ``max_age_s``, counted from the moment the
query that produced it was *sent* (what QuestDB answered reflects at least that moment).
Live changes reach browsers through /stream; /candles is for the initial load.

- **Single flight**: concurrent requests for a key that has no usable body run one query;
  the others wait for its result (or its error: 503 for all, nothing cached).
- **Stale-while-revalidate**: once a body is older than half its bound, the next request
  starts one background refresh and is answered with the body it has, as are the
  requests after it, until the refresh lands. Under steady traffic nobody waits for
  QuestDB; a key idle for longer than the bound is queried again on its next request.
- **Bounded memory**: at most ``max_entries`` bodies and ``max_bytes`` bytes per process,
  least recently used first out; expired bodies are dropped when a new one is stored.
- **Share only** (``get(..., keep=False)``): the single flight without keeping the body,
  for the open-ended /candles (no ``to``: the latest bars, the forming one included),
  which the terminal loads once and then follows through /stream.

One cache per gunicorn worker (a process of its own), so with N workers a popular key is
queried up to N times per bound. Nothing here starts a thread before it is needed, so a
cache created in gunicorn's master (``preload_app``) works in every forked worker.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from gostream.api import metrics

log = logging.getLogger(__name__)

HIT, MISS, SHARED = "hit", "miss", "shared"


class _Entry:
    __slots__ = ("body", "born")

    def __init__(self, body: bytes, born: float) -> None:
        self.body = body
        self.born = born  # time.monotonic() when the query was sent


class _Flight:
    """One query in progress that other requests can wait for."""

    __slots__ = ("done", "entry", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: _Entry | None = None
        self.error: BaseException | None = None


class ResponseCache:
    def __init__(self, max_age_s: float, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_age_s <= 0 or max_entries <= 0 or max_bytes <= 0:
            raise ValueError("a cache needs a positive age, entry count and size")
        self.max_age_s = max_age_s
        self.refresh_after_s = max_age_s / 2
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()  # least recently used first
        self._flights: dict[Hashable, _Flight] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def lookup(self, key: Hashable, load: Callable[[], bytes]) -> tuple[bytes, float, str] | None:
        """(body, its age in seconds, "hit") if a body within the bound is held, else None.
        A body past half its bound gets one background refresh with ``load``."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now - entry.born >= self.max_age_s:
                return None
            self._entries.move_to_end(key)
            refresh = None
            if now - entry.born >= self.refresh_after_s and key not in self._flights:
                refresh = self._flights[key] = _Flight()
        if refresh is not None:
            metrics.CANDLES_CACHE_REFRESHES.inc()
            threading.Thread(target=self._refresh, args=(key, load, refresh), name="cache-refresh", daemon=True).start()
        metrics.CANDLES_CACHE.labels(HIT).inc()
        return entry.body, now - entry.born, HIT

    def get(self, key: Hashable, load: Callable[[], bytes], keep: bool = True) -> tuple[bytes, float, str]:
        """(body, its age in seconds, how it was found: hit, miss or shared). ``load`` makes
        a body; it runs in this thread on a miss, in a thread of its own for a refresh,
        and never twice at once for one key. Its exceptions reach every waiting caller.
        With ``keep`` false the body is only shared with the requests that arrive while
        its query runs, never stored (no hit, no refresh)."""
        while True:
            if keep:
                found = self.lookup(key, load)
                if found is not None:
                    return found
            with self._lock:
                entry = self._entries.get(key) if keep else None
                if entry is not None and self.clock() - entry.born < self.max_age_s:
                    continue  # stored since the lookup: a hit after all
                flight = self._flights.get(key)
                leader = flight is None
                if leader:
                    flight = self._flights[key] = _Flight()
            break
        if leader:
            metrics.CANDLES_CACHE.labels(MISS).inc()
            entry = self._load(key, load, flight, keep)
            return entry.body, self.clock() - entry.born, MISS
        metrics.CANDLES_CACHE.labels(SHARED).inc()
        flight.done.wait()
        if flight.error is not None:
            raise _copy(flight.error)
        return flight.entry.body, self.clock() - flight.entry.born, SHARED

    def _load(self, key: Hashable, load: Callable[[], bytes], flight: _Flight, keep: bool = True) -> _Entry:
        born = self.clock()
        try:
            body = load()
        except BaseException as exc:
            flight.error = exc
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()
            raise
        entry = flight.entry = _Entry(body, born)
        with self._lock:
            self._flights.pop(key, None)
            if keep:
                self._store(key, entry)
            count, size = len(self._entries), self._bytes
        flight.done.set()
        metrics.CANDLES_CACHE_ENTRIES.set(count)
        metrics.CANDLES_CACHE_BYTES.set(size)
        return entry

    def _refresh(self, key: Hashable, load: Callable[[], bytes], flight: _Flight) -> None:
        try:
            self._load(key, load, flight)
        except Exception as exc:  # the old body stays until its bound; then requests query (and see the error)
            log.warning("cache refresh failed", extra={"error": str(exc)[:300]})

    def _store(self, key: Hashable, entry: _Entry) -> None:
        """With the lock held."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        if len(entry.body) > self.max_bytes:
            return  # served, not kept
        self._entries[key] = entry
        self._bytes += len(entry.body)
        oldest_usable = self.clock() - self.max_age_s
        for k in [k for k, e in self._entries.items() if e.born <= oldest_usable]:
            self._bytes -= len(self._entries.pop(k).body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes of the bodies held."""
        return self._bytes


def _copy(error: BaseException) -> BaseException:
    """The error of a shared query, as an exception of its own for each waiting caller
    (one object raised in several threads at once would mix their tracebacks)."""
    try:
        return copy.copy(error)
    except Exception:
        return error

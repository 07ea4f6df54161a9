"""/stream under the conditions that broke it: a lock-order inversion between the hub and
a feed (a deadlock when a client subscribes as an idle feed's grace period ends), and a
millisecond holding more fills than one poll reads (a livelock)."""

from __future__ import annotations

import threading
import types
import urllib.parse
import urllib.request

from gostream.api import stream
from gostream.api.db import Database, make_engine
from gostream.api.queries import INTERVALS
from gostream.api.settings import ApiSettings
from tests.api.pipeline import insert_trade
from tests.api.sse import SSE, trade_ids
from tests.conftest import TEST_PORTS, sql, unique, wait_for

MINUTE = 1_704_258_000  # 2024-01-03 05:00:00 UTC


def exec_sql(query: str) -> None:
    url = f"http://127.0.0.1:{TEST_PORTS.questdb_http}/exec?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200, response.read()


def insert_same_millisecond(symbol: str, first_id: int, n: int, at_us: int, price: float) -> None:
    """``n`` fills of one sweep of the book: consecutive ids, one timestamp."""
    exec_sql(f"INSERT INTO trades (symbol, side, trade_id, price, size, fills, received_at, timestamp) "
             f"SELECT '{symbol}', 'buy', {first_id - 1} + x, {price}, 0.001, 1, cast({at_us} AS timestamp), "
             f"cast({at_us} AS timestamp) FROM long_sequence({n})")


class LockOrder:
    """Lock-order checking (as the kernel's lockdep does): every lock the stream module makes
    records which locks its thread already held when it was taken. Taking A then B in one
    place and B then A in another is a deadlock waiting for the right interleaving, found
    here whether or not the threads happen to meet."""

    def __init__(self) -> None:
        self.held = threading.local()
        self.edges: set[tuple[int, int]] = set()
        self.inversions: list[str] = []
        self.names: dict[int, str] = {}
        self.guard = threading.Lock()

    def module(self) -> types.SimpleNamespace:
        checker = self

        class Checked:
            def __init__(self, inner) -> None:
                self.inner = inner
                checker.names[id(self)] = f"lock#{len(checker.names) + 1}"

            def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
                checker.taking(self)
                got = self.inner.acquire(blocking, timeout)
                if got:
                    checker.stack().append(id(self))
                return got

            def release(self) -> None:
                stack = checker.stack()
                if id(self) in stack:
                    stack.remove(id(self))
                self.inner.release()

            def locked(self) -> bool:
                return self.inner.locked()

            __enter__ = acquire

            def __exit__(self, *exc) -> None:
                self.release()

        return types.SimpleNamespace(**{**vars(threading), "Lock": lambda: Checked(threading.Lock()),
                                        "RLock": lambda: Checked(threading.RLock())})

    def stack(self) -> list[int]:
        if not hasattr(self.held, "stack"):
            self.held.stack = []
        return self.held.stack

    def taking(self, lock) -> None:
        with self.guard:
            for held in self.stack():
                if held == id(lock):
                    continue
                if (id(lock), held) in self.edges:
                    self.inversions.append(f"{self.names[held]} then {self.names[id(lock)]} in "
                                           f"{threading.current_thread().name}, the other order elsewhere")
                self.edges.add((held, id(lock)))


def test_subscribing_as_an_idle_feed_stops_never_deadlocks(api, monkeypatch):
    symbol = unique("DLK") + "-USDT"
    insert_trade(symbol, 1, 100.0, 0.5, MINUTE + 5)
    order = LockOrder()
    monkeypatch.setattr(stream, "threading", order.module())
    monkeypatch.setattr(stream, "LINGER_S", 0.0)  # the grace period ends at once
    settings = ApiSettings(questdb_host="127.0.0.1", questdb_pg_port=TEST_PORTS.questdb_pg)
    db = Database(make_engine(settings))
    hub = stream.Hub(db, 10, 1.0)
    try:
        for _ in range(3):
            sub = hub.subscribe(symbol, INTERVALS["1m"])
            sub.close()
            wait_for(lambda: symbol not in hub.feeds, 10, interval_s=0.01, message="the idle feed to stop")
        # ...and a client subscribing after that is served (on a thread: a deadlock must not
        # hang the test run itself).
        done = threading.Event()
        threading.Thread(target=lambda: (hub.subscribe(symbol, INTERVALS["1m"]).close(), done.set()),
                         daemon=True).start()
        wait_for(done.is_set, 10, message="subscribe to return")
        assert order.inversions == []
    finally:
        hub.stop()
        db.close()


def test_a_millisecond_with_more_fills_than_one_poll_reads_streams_them_all(api):
    # One sweep of the book: 2,500 fills stamped with one millisecond, then a later trade.
    # Polling `timestamp >= since ORDER BY timestamp LIMIT 1000` read the same 1,000 rows for
    # ever, and nothing after them ever reached the stream.
    symbol = unique("LVL") + "-USDT"
    insert_trade(symbol, 1, 100.0, 0.5, MINUTE + 1)
    client = SSE(TEST_PORTS.api, f"/stream?symbol={symbol}&interval=1m")
    try:
        assert client.response.status == 200
        client.until(lambda e, _: e[0] == "hello")
        at_us = (MINUTE + 2) * 1_000_000 + 500
        insert_same_millisecond(symbol, 2, 2500, at_us, 101.0)
        exec_sql(f"INSERT INTO trades (symbol, side, trade_id, price, size, fills, received_at, timestamp) VALUES "
                 f"('{symbol}', 'sell', 2502, 102.0, 0.25, 1, {at_us + 1000}, {at_us + 1000})")
        seen = client.until(lambda e, s: 2502 in trade_ids(s), timeout_s=60)
        ids = trade_ids(seen)
        assert sorted(ids) == list(range(2, 2503)) and len(ids) == 2501  # each once, none missing
        candles = [data for name, data in seen if name == "candle"]
        assert candles[-1]["close"] == 102.0 and candles[-1]["time"] == MINUTE
    finally:
        client.close()
    assert sql(f"SELECT count() n FROM trades WHERE symbol = '{symbol}'")[0]["n"] == 2502

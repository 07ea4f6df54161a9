"""The /candles response cache: bounded staleness, single flight, stale-while-revalidate,
bounded memory, its metrics, and CANDLES_CACHE_MS=0.

In process (``ResponseCache`` with a clock the test moves, loading real candles from the
session's QuestDB) for the exact rules; through HTTP (apis of their own, one worker each,
so every request meets the same cache) for what a client sees. No assertion is about speed.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.request
from functools import partial

import pytest

from gostream.api import market, metrics
from gostream.api.cache import ResponseCache
from gostream.api.db import Database, Unavailable, make_engine
from gostream.api.queries import INTERVALS
from gostream.api.settings import ApiSettings
from stack import components as c
from stack.process import Process
from tests.api.pipeline import insert_trade as insert
from tests.conftest import TEST_PORTS, metric, spare_port, unique, wait_for

MINUTE = 1_704_164_400  # 2024-01-02 03:00:00 UTC (a whole hour): the trades here fall in the minutes after it
RANGE = f"from={MINUTE}&to={MINUTE + 3600}&limit=100"


# -- helpers -----------------------------------------------------------------
def fetch(port: int, path: str) -> tuple[dict, list]:
    """(headers, decoded body) of a 200 GET."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        assert response.status == 200
        return {k.lower(): v for k, v in response.getheaders()}, json.load(response)


def closes(body: list) -> list[float]:
    return [candle["close"] for candle in body]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingLoad:
    """``load`` for the cache: the real candles from QuestDB, counted, optionally held at a gate."""

    def __init__(self, db: Database, symbol: str, interval: str = "1m") -> None:
        self.calls = 0
        self.gate: threading.Event | None = None
        self.fail: Exception | None = None
        self._real = partial(market.candles_json, db, symbol, INTERVALS[interval], MINUTE, MINUTE + 3600, 100)

    def __call__(self) -> bytes:
        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(60), "the test never opened the gate"
        if self.fail is not None:
            raise self.fail
        return self._real()


def counted(result: str) -> float:
    return metrics.CANDLES_CACHE.labels(result)._value.get()


def together(ask, load: CountingLoad, n: int) -> None:
    """Run ``ask`` in ``n`` threads while ``load`` is held at its gate: once the other n - 1
    wait for the one query in progress, open the gate and let them all finish."""
    load.gate = threading.Event()
    shared_before = counted("shared")
    askers = [threading.Thread(target=ask) for _ in range(n)]
    for asker in askers:
        asker.start()
    wait_for(lambda: counted("shared") - shared_before == n - 1 and load.calls == 1, 30,
             message=f"{n - 1} requests sharing one query")
    load.gate.set()
    for asker in askers:
        asker.join(30)


@pytest.fixture(scope="module")
def db(api) -> Database:  # `api` made the schema
    database = Database(make_engine(ApiSettings(questdb_host="127.0.0.1", questdb_pg_port=TEST_PORTS.questdb_pg)))
    yield database
    database.close()


@pytest.fixture
def symbol(api) -> str:
    name = unique("CACHE") + "-USDT"
    insert(name, 1, 100.0, 0.5, MINUTE + 5)
    return name


# -- the rules, in process -----------------------------------------------------
def test_serves_the_cached_body_within_its_bound_and_queries_again_after(db, symbol):
    clock = FakeClock()
    cache = ResponseCache(max_age_s=10, max_entries=8, max_bytes=1 << 20, clock=clock)
    load = CountingLoad(db, symbol)
    body, age, how = cache.get("k", load)
    assert how == "miss" and age == 0 and closes(json.loads(body)) == [100.0]

    insert(symbol, 2, 101.0, 0.5, MINUTE + 6)  # QuestDB has changed ...
    clock.now += 4  # ... but the body is younger than half its bound: as it was, no query
    assert cache.get("k", load) == (body, 4, "hit")
    assert load.calls == 1

    clock.now += 7  # past the bound (11 s): never served again
    fresh, age, how = cache.get("k", load)
    assert how == "miss" and age == 0 and load.calls == 2
    assert closes(json.loads(fresh)) == [101.0]


def test_stale_body_is_served_while_one_refresh_runs(db, symbol):
    clock = FakeClock()
    cache = ResponseCache(max_age_s=10, max_entries=8, max_bytes=1 << 20, clock=clock)
    load = CountingLoad(db, symbol)
    old, _, _ = cache.get("k", load)
    insert(symbol, 2, 99.0, 0.5, MINUTE + 70)  # a new minute
    refreshes = metrics.CANDLES_CACHE_REFRESHES._value.get()

    load.gate = threading.Event()  # the refresh will wait here until the test lets it go
    clock.now += 6  # past half the bound: refresh in the background, answer at once
    answers = []
    for _ in range(3):
        asker = threading.Thread(target=lambda: answers.append(cache.get("k", load)))
        asker.start()
        asker.join(30)
        assert not asker.is_alive(), "a request waited for the background refresh"
    assert answers == [(old, 6, "hit")] * 3
    wait_for(lambda: load.calls == 2, 30, message="the refresh to start")  # one refresh, not one per request
    assert metrics.CANDLES_CACHE_REFRESHES._value.get() == refreshes + 1

    load.gate.set()
    wait_for(lambda: closes(json.loads(cache.get("k", load)[0])) == [100.0, 99.0], 30, message="the refreshed body")
    body, age, how = cache.get("k", load)
    assert how == "hit" and age == 0 and load.calls == 2  # the refresh's body, dated when its query was sent


def test_concurrent_misses_run_one_query(db, symbol):
    cache = ResponseCache(max_age_s=60, max_entries=8, max_bytes=1 << 20)
    load = CountingLoad(db, symbol)
    results: list[tuple] = []
    together(lambda: results.append(cache.get("k", load)), load, 8)
    assert load.calls == 1
    assert sorted(how for _, _, how in results) == ["miss"] + ["shared"] * 7
    assert len({body for body, _, _ in results}) == 1
    assert closes(json.loads(results[0][0])) == [100.0]


def test_share_only_bodies_are_shared_by_concurrent_requests_and_never_kept(db, symbol):
    cache = ResponseCache(max_age_s=60, max_entries=8, max_bytes=1 << 20)
    load = CountingLoad(db, symbol)
    results: list[tuple] = []
    together(lambda: results.append(cache.get("k", load, keep=False)), load, 4)
    assert sorted(how for _, _, how in results) == ["miss", "shared", "shared", "shared"] and load.calls == 1
    assert len(cache) == 0
    insert(symbol, 2, 105.0, 0.5, MINUTE + 9)
    body, _, how = cache.get("k", load, keep=False)  # the next request queries again
    assert how == "miss" and load.calls == 2 and closes(json.loads(body)) == [105.0]


def test_a_failed_query_fails_every_waiter_and_is_not_cached(db, symbol):
    cache = ResponseCache(max_age_s=60, max_entries=8, max_bytes=1 << 20)
    load = CountingLoad(db, symbol)
    load.fail = Unavailable("QuestDB is unavailable")
    errors: list[BaseException] = []

    def ask():
        try:
            cache.get("k", load)
        except Unavailable as exc:
            errors.append(exc)

    together(ask, load, 4)
    assert len(errors) == 4 and all(str(e) == "QuestDB is unavailable" for e in errors)
    assert len({id(e) for e in errors}) == 4  # each its own exception object
    assert len(cache) == 0
    load.fail = None
    body, _, how = cache.get("k", load)  # QuestDB back: queried again
    assert how == "miss" and load.calls == 2 and closes(json.loads(body)) == [100.0]


def test_memory_is_bounded_least_recently_used_first(db, symbol):
    clock = FakeClock()
    load = CountingLoad(db, symbol)
    size = len(load())
    cache = ResponseCache(max_age_s=60, max_entries=2, max_bytes=1 << 20, clock=clock)
    for key in ("a", "b"):
        cache.get(key, load)
    cache.get("a", load)  # "a" is now the most recently used
    cache.get("c", load)  # one too many: "b" goes
    assert len(cache) == 2 and cache.size == 2 * size
    calls = load.calls
    assert cache.get("a", load)[2] == "hit" and cache.get("c", load)[2] == "hit"
    assert cache.get("b", load)[2] == "miss" and load.calls == calls + 1

    # By bytes: room for two bodies; a body bigger than the whole budget is served, not kept.
    small = ResponseCache(max_age_s=60, max_entries=100, max_bytes=2 * size + 1, clock=clock)
    for key in ("a", "b", "c"):
        small.get(key, load)
    assert len(small) == 2 and small.size <= 2 * size + 1
    tiny = ResponseCache(max_age_s=60, max_entries=100, max_bytes=size - 1, clock=clock)
    assert tiny.get("a", load)[2] == "miss" and len(tiny) == 0 and tiny.get("a", load)[2] == "miss"

    # Expired bodies are dropped when another is stored.
    clock.now += 61
    cache.get("d", load)
    assert len(cache) == 1


def test_latest_candles_do_not_wait_for_the_view(db, symbol):
    """Without `to` the forming bucket comes from the trades, as /stream computes it. The
    view lagging behind is played by the view query itself, cut one minute short."""
    insert(symbol, 2, 110.0, 0.25, MINUTE + 65)
    view = INTERVALS["1m"]
    lagging = dataclasses.replace(view, sql=view.sql.replace("timestamp < %(hi)s", "timestamp < %(hi)s - 60000000"))
    assert lagging.sql != view.sql
    assert json.loads(market.candles_json(db, symbol, lagging, MINUTE, MINUTE + 65, 10)) == [
        {"time": MINUTE, "open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0, "volume": 0.5},
    ]  # with `to`: what the view says
    assert json.loads(market.candles_json(db, symbol, lagging, MINUTE, None, 10)) == [
        {"time": MINUTE, "open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0, "volume": 0.5},
        {"time": MINUTE + 60, "open": 110.0, "high": 110.0, "low": 110.0, "close": 110.0, "volume": 0.25},
    ]
    # `limit` still holds when the forming bucket is added; 5m rolls the same minutes up.
    assert closes(json.loads(market.candles_json(db, symbol, lagging, None, None, 1))) == [110.0]
    assert json.loads(market.candles_json(db, symbol, INTERVALS["5m"], None, None, 10)) == [
        {"time": MINUTE, "open": 100.0, "high": 110.0, "low": 100.0, "close": 110.0, "volume": 0.75},
    ]


# -- what a client sees ---------------------------------------------------------
def _api(stack_dir, name: str, **env: str) -> Process:
    port = spare_port()
    ports = c.Ports(api=port, questdb_pg=TEST_PORTS.questdb_pg, questdb_http=TEST_PORTS.questdb_http)
    spec = c.api(ports, c.service_env(ports, LOG_LEVEL="INFO", WEB_CONCURRENCY="1", **env))
    process = Process(spec, stack_dir / "logs" / name).start().wait_ready(60)
    process.port = port
    return process


@pytest.fixture(scope="module")
def long_cache_api(api, stack_dir):
    """Bodies kept 60 s: longer than any of these tests takes."""
    process = _api(stack_dir, "api-cache-60s", CANDLES_CACHE_MS="60000")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def short_cache_api(api, stack_dir):
    process = _api(stack_dir, "api-cache-1s", CANDLES_CACHE_MS="1000")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def uncached_api(api, stack_dir):
    process = _api(stack_dir, "api-no-cache", CANDLES_CACHE_MS="0")
    yield process
    process.stop()


def test_http_cached_answer_within_the_bound(long_cache_api, symbol):
    port = long_cache_api.port
    headers, first = fetch(port, f"/candles?symbol={symbol}&{RANGE}")
    assert headers["x-cache"] == "miss" and headers["cache-control"] == "public, max-age=60"
    assert closes(first) == [100.0]
    insert(symbol, 2, 101.0, 0.5, MINUTE + 6)
    headers, again = fetch(port, f"/candles?symbol={symbol}&{RANGE}")
    assert headers["x-cache"] == "hit" and 0 <= int(headers["age"]) <= 60
    assert again == first  # QuestDB says 101.0 now; the api still answers what it cached
    # Bounds anywhere inside the same buckets are the same question: the same cached body.
    headers, moved = fetch(port, f"/candles?symbol={symbol}&from={MINUTE + 59}&to={MINUTE + 3600 + 30}&limit=100")
    assert headers["x-cache"] == "hit" and moved == first


def test_http_different_parameters_do_not_collide(long_cache_api, symbol):
    port = long_cache_api.port
    insert(symbol, 2, 103.0, 0.25, MINUTE + 65)
    insert(symbol, 3, 104.0, 0.25, MINUTE + 200)
    answers = {}
    for query in (f"symbol={symbol}&{RANGE}",
                  f"symbol={symbol}&interval=5m&{RANGE}",
                  f"symbol={symbol}&from={MINUTE}&to={MINUTE + 3600}&limit=1",
                  f"symbol={symbol}&from={MINUTE + 60}&to={MINUTE + 3600}&limit=100",
                  f"symbol={symbol}&from={MINUTE}&to={MINUTE + 60}&limit=100",
                  f"symbol=OTHER{symbol}&{RANGE}"):
        fetch(port, f"/candles?{query}")  # cache every one of them first
        headers, body = fetch(port, f"/candles?{query}")
        assert headers["x-cache"] == "hit", query
        answers[query] = [(c["time"], c["close"]) for c in body]
    assert list(answers.values()) == [
        [(MINUTE, 100.0), (MINUTE + 60, 103.0), (MINUTE + 180, 104.0)],
        [(MINUTE, 104.0)],
        [(MINUTE + 180, 104.0)],
        [(MINUTE + 60, 103.0), (MINUTE + 180, 104.0)],
        [(MINUTE, 100.0), (MINUTE + 60, 103.0)],
        [],
    ]


def test_http_concurrent_requests_share_one_query(long_cache_api, symbol):
    port = long_cache_api.port
    path = f"/candles?symbol={symbol}&{RANGE}"
    before = {r: metric(port, "gostream_api_candles_cache_requests_total", f'result="{r}"') for r in ("hit", "miss", "shared")}
    barrier = threading.Barrier(12)
    answers: list[tuple] = []

    def ask():
        barrier.wait(30)
        answers.append(fetch(port, path))

    askers = [threading.Thread(target=ask) for _ in range(12)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(60)
    assert len(answers) == 12
    after = {r: metric(port, "gostream_api_candles_cache_requests_total", f'result="{r}"') for r in before}
    # However they overlapped: one query; the rest waited for it or found its body.
    assert after["miss"] - before["miss"] == 1
    assert (after["hit"] - before["hit"]) + (after["shared"] - before["shared"]) == 11
    assert len({json.dumps(body) for _, body in answers}) == 1 and closes(answers[0][1]) == [100.0]


def test_http_latest_candles_are_never_served_from_the_cache(long_cache_api, symbol):
    port = long_cache_api.port
    path = f"/candles?symbol={symbol}&interval=1m&limit=10"
    headers, body = fetch(port, path)
    assert headers["cache-control"] == "no-store" and headers["x-cache"] in ("miss", "shared")
    assert closes(body) == [100.0]
    insert(symbol, 2, 106.0, 0.5, MINUTE + 70)
    headers, body = fetch(port, path)  # within the 60 s bound, yet QuestDB's answer now
    assert headers["x-cache"] in ("miss", "shared") and closes(body) == [100.0, 106.0]


def test_http_new_trade_shows_up_after_the_bound(short_cache_api, symbol):
    port = short_cache_api.port
    path = f"/candles?symbol={symbol}&{RANGE}"
    headers, body = fetch(port, path)
    assert closes(body) == [100.0] and headers["cache-control"] == "public, max-age=1"
    insert(symbol, 2, 107.0, 0.5, MINUTE + 7)
    seen: list[dict] = []

    def updated():
        headers, body = fetch(port, path)
        seen.append(headers)
        return closes(body) == [107.0]

    wait_for(updated, 30, interval_s=0.05, message="the new trade in /candles once the cached body is too old")
    assert all(int(h["age"]) <= 1 for h in seen)  # never a body older than the bound (whole seconds)


def test_http_cache_off(uncached_api, symbol):
    port = uncached_api.port
    path = f"/candles?symbol={symbol}&{RANGE}"
    headers, body = fetch(port, path)
    assert headers["cache-control"] == "no-store" and "x-cache" not in headers and "age" not in headers
    assert closes(body) == [100.0]
    insert(symbol, 2, 108.0, 0.5, MINUTE + 8)
    assert closes(fetch(port, path)[1]) == [108.0]  # QuestDB has it, so the answer has it
    assert metric(port, "gostream_api_candles_cache_requests_total") == 0


def test_cache_metrics_are_exported(long_cache_api, symbol):
    port = long_cache_api.port
    path = f"/candles?symbol={symbol}&from={MINUTE}&to={MINUTE + 60}&limit=7"
    before = {r: metric(port, "gostream_api_candles_cache_requests_total", f'result="{r}"') for r in ("hit", "miss")}
    fetch(port, path)
    fetch(port, path)
    assert metric(port, "gostream_api_candles_cache_requests_total", 'result="miss"') == before["miss"] + 1
    assert metric(port, "gostream_api_candles_cache_requests_total", 'result="hit"') == before["hit"] + 1
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for name in ("gostream_api_candles_cache_requests_total", "gostream_api_candles_cache_refreshes_total",
                 "gostream_api_candles_cache_entries", "gostream_api_candles_cache_bytes"):
        assert f"\n{name}" in text, name
    assert metric(port, "gostream_api_candles_cache_entries") >= 1
    assert metric(port, "gostream_api_candles_cache_bytes") > 0
    # Cached answers count as /candles requests like any other.
    assert metric(port, "gostream_api_requests_total", 'endpoint="/candles",status="200"') >= 2

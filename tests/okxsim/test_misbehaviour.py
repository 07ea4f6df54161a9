"""The simulated exchange's REST faults and WebSocket holes, over real HTTP and WebSocket.

Each test uses its own exchange on an ephemeral port (port 0), so nothing here collides
with a test session running beside it.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

from tests.conftest import get_json, wait_for
from tests.okxsim import OkxExchange, generate

REPO = Path(__file__).resolve().parents[2]


def call(base_url: str, path: str) -> tuple[int, dict]:
    return get_json(base_url + path)


def history_path(symbol: str, **params) -> str:
    query = {"instId": symbol, "type": "1", "limit": "100", **{k: str(v) for k, v in params.items()}}
    return "/api/v5/market/history-trades?" + urllib.parse.urlencode(query)


def served_ids(exchange: OkxExchange, symbol: str, **params) -> list[int]:
    status, body = call(exchange.rest_url, history_path(symbol, **params))
    assert status == 200 and body["code"] == "0", (status, body)
    return [int(t["tradeId"]) for t in body["data"]]


def ids(trades: list[dict]) -> list[int]:
    return [int(t["tradeId"]) for t in trades]


async def subscribe(exchange: OkxExchange, symbol: str, channel: str = "trades-all"):
    ws = await connect(exchange.ws_url(channel))
    await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": channel, "instId": symbol}]}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["event"] == "subscribe"
    return ws


async def pushes_until(ws, last_id: int) -> list[dict]:
    """Trade items pushed until the one with ``last_id`` (inclusive)."""
    items: list[dict] = []
    while not items or int(items[-1]["tradeId"]) != last_id:
        items.extend(json.loads(await asyncio.wait_for(ws.recv(), 5))["data"])
    return items


# -- REST: 429 share, outage, lag, reach, extra items ---------------------------
def test_a_429_ratio_refuses_exactly_that_share_of_requests():
    with OkxExchange(port=0, control=True) as exchange:
        exchange.emit(generate("R-USDT", 5, first_id=100))
        exchange.rest_429_ratio = 0.5
        answers = [call(exchange.rest_url, history_path("R-USDT")) for _ in range(20)]
        assert [status for status, _ in answers] == [200, 429] * 10
        for status, body in answers:
            if status == 429:
                assert body == {"code": "50011", "msg": "Too Many Requests", "data": []}
            else:
                assert ids(body["data"]) == [104, 103, 102, 101, 100]
        assert exchange.rest_throttled == 10 and exchange.rest_requests == 20 and exchange.rest_served == 10

        # Refused requests still count against OKX's real 20 / 2 s: the 21st is refused by it.
        exchange.rest_429_ratio = 0.0
        assert call(exchange.rest_url, history_path("R-USDT"))[0] == 429
        wait_for(lambda: call(exchange.rest_url, history_path("R-USDT"))[0] == 200, interval_s=0.3,
                 message="the rate-limit window to pass")


    # Set over HTTP (a fresh exchange: an empty rate-limit window): 0.25 refuses every 4th.
    with OkxExchange(port=0, control=True) as exchange:
        exchange.emit(generate("R-USDT", 5, first_id=100))
        assert call(exchange.rest_url, "/sim/rest?ratio_429=0.25")[1]["ratio_429"] == 0.25
        statuses = [call(exchange.rest_url, history_path("R-USDT"))[0] for _ in range(8)]
        assert statuses == [200, 200, 200, 429] * 2
        exchange.rest_429_ratio = 0.5  # a new ratio counts afresh: the 2nd from now is refused
        assert [call(exchange.rest_url, history_path("R-USDT"))[0] for _ in range(2)] == [200, 429]
        exchange.rest_429_ratio = 1.0
        assert [call(exchange.rest_url, history_path("R-USDT"))[0] for _ in range(3)] == [429] * 3
        assert exchange.rest_throttled == 6


def test_an_outage_fails_every_rest_request_until_it_ends():
    with OkxExchange(port=0, control=True) as exchange:
        exchange.emit(generate("O-USDT", 3, first_id=10))
        started = time.monotonic()
        exchange.rest_outage(1.5)
        assert exchange.rest_down
        status, body = call(exchange.rest_url, history_path("O-USDT"))
        assert status == 503 and body["code"] == "50001" and body["data"] == []
        assert call(exchange.rest_url, "/api/v5/market/tickers")[0] == 503  # the host is down, not one path
        failures = [2]

        def recovered() -> bool:
            answer = call(exchange.rest_url, history_path("O-USDT"))
            if answer[0] == 503:
                failures[0] += 1
            return answer[0] == 200 and ids(answer[1]["data"]) == [12, 11, 10]

        wait_for(recovered, timeout_s=10, interval_s=0.1, message="REST back after the outage")
        assert time.monotonic() - started >= 1.5  # not before its end
        assert not exchange.rest_down and exchange.rest_failed == failures[0] >= 3

        # Over HTTP: the control plane keeps answering while REST is down; down_s=0 ends it.
        state = call(exchange.rest_url, "/sim/rest?down_s=60")[1]
        assert 59 < state["down_for_s"] <= 60 and state["rest_failed"] == failures[0]
        assert call(exchange.rest_url, history_path("O-USDT"))[0] == 503
        assert call(exchange.rest_url, "/sim/status")[1]["rest"]["rest_failed"] == failures[0] + 1
        assert call(exchange.rest_url, "/sim/rest?down_s=0")[1]["down_for_s"] == 0
        assert served_ids(exchange, "O-USDT") == [12, 11, 10]


def test_lagging_history_serves_older_trades_and_the_new_ones_only_later():
    lag = 3.0
    with OkxExchange(port=0) as exchange:
        first_taped = time.monotonic()
        exchange.emit(generate("L-USDT", 50, first_id=1000))
        exchange.rest_lag_s = lag
        assert served_ids(exchange, "L-USDT") == []  # taped just now
        wait_for(lambda: served_ids(exchange, "L-USDT"), message="the first trades to be served")
        assert time.monotonic() - first_taped >= lag
        taped = time.monotonic()
        exchange.emit(generate("L-USDT", 10, first_id=1050))
        assert served_ids(exchange, "L-USDT", after=1060) == list(range(1049, 999, -1))
        assert served_ids(exchange, "L-USDT") == list(range(1049, 999, -1))
        assert served_ids(exchange, "L-USDT", after=1055) == list(range(1049, 999, -1))
        assert time.monotonic() - taped < lag  # else the answers above proved nothing
        wait_for(lambda: served_ids(exchange, "L-USDT", after=1060)[:1] == [1059],
                 message="the lagging trades to be served")
        assert time.monotonic() - taped >= lag
        assert served_ids(exchange, "L-USDT", after=1060) == list(range(1059, 999, -1))

        # Trades taped below older ones (out of id order) lag the same way.
        late = time.monotonic()
        exchange.emit(generate("L-USDT", 10, first_id=990))
        assert served_ids(exchange, "L-USDT", after=1000) == []
        assert served_ids(exchange, "L-USDT", after=1060) == list(range(1059, 999, -1))
        assert time.monotonic() - late < lag
        wait_for(lambda: served_ids(exchange, "L-USDT", after=1000),
                 message="the out-of-order trades to be served")
        assert time.monotonic() - late >= lag
        assert served_ids(exchange, "L-USDT", after=1000) == list(range(999, 989, -1))
        assert served_ids(exchange, "L-USDT", after=1060, limit=100) == list(range(1059, 989, -1))
        exchange.rest_lag_s = 0
        exchange.emit(generate("L-USDT", 1, first_id=1060))
        assert served_ids(exchange, "L-USDT")[:2] == [1060, 1059]


def test_history_reach_serves_only_the_newest_trades():
    with OkxExchange(port=0) as exchange:
        exchange.emit(generate("H-USDT", 1000, first_id=5000))
        exchange.emit(generate("OTHER-USDT", 10, first_id=1))
        exchange.history_reach = 100
        assert served_ids(exchange, "H-USDT") == list(range(5999, 5899, -1))
        assert served_ids(exchange, "H-USDT", after=6000) == list(range(5999, 5899, -1))
        assert served_ids(exchange, "H-USDT", after=5950) == list(range(5949, 5899, -1))
        assert served_ids(exchange, "H-USDT", after=5901) == [5900]
        assert served_ids(exchange, "H-USDT", after=5900) == []
        assert served_ids(exchange, "H-USDT", after=5500) == []
        assert served_ids(exchange, "H-USDT", after=10) == []
        assert served_ids(exchange, "OTHER-USDT") == list(range(10, 0, -1))  # per symbol
        exchange.emit(generate("H-USDT", 10, first_id=6000))  # the window moves on
        assert served_ids(exchange, "H-USDT", after=5911) == [5910]
        assert served_ids(exchange, "H-USDT", after=5910) == []
        exchange.history_reach = 0
        assert served_ids(exchange, "H-USDT") == []
        exchange.history_reach = None
        assert served_ids(exchange, "H-USDT", after=5900) == list(range(5899, 5799, -1))
        assert served_ids(exchange, "H-USDT", after=5001) == [5000]


def test_extra_items_are_mixed_into_every_history_answer_with_trades():
    extra = [{"instId": "X-USDT", "tradeId": "x", "px": ".", "sz": "1", "side": "buy", "ts": "1"}, "junk", None, 7]
    with OkxExchange(port=0) as exchange:
        trades = generate("X-USDT", 10, first_id=300)
        exchange.emit(trades)
        exchange.rest_extra_items = extra
        for _ in range(2):
            data = call(exchange.rest_url, history_path("X-USDT"))[1]["data"]
            assert data == trades[:4:-1] + extra + trades[4::-1]
        data = call(exchange.rest_url, history_path("X-USDT", after=302))[1]["data"]
        assert data == [trades[1]] + extra + [trades[0]]
        assert call(exchange.rest_url, history_path("X-USDT", after=300))[1]["data"] == []  # empty stays empty
        assert call(exchange.rest_url, history_path("X-USDT", after=310, limit=4))[1]["data"] == \
            trades[:7:-1] + extra + trades[7:5:-1]  # on top of the limit
        exchange.rest_extra_items = []
        assert call(exchange.rest_url, history_path("X-USDT"))[1]["data"] == trades[::-1]


# -- WebSocket: raw items, hidden and forgotten trades ---------------------------
def test_raw_items_are_pushed_as_sent_and_never_taped():
    items = [{"instId": "I-USDT", "tradeId": "7", "px": ".", "sz": "1", "side": "buy", "ts": "1"},
             {"tradeId": 8}, "junk", None, 3.5, []]
    more = [{"instId": "I-USDT", "tradeId": "9", "px": "1e999", "sz": "-1", "side": "up", "ts": "x"}]

    async def scenario(exchange: OkxExchange) -> None:
        latest = generate("I-USDT", 1, first_id=1)
        exchange.emit(latest)
        business = await subscribe(exchange, "I-USDT")
        public = await subscribe(exchange, "I-USDT", "trades")
        assert json.loads(await asyncio.wait_for(business.recv(), 5))["data"] == latest  # re-sent on subscribe
        assert json.loads(await asyncio.wait_for(public.recv(), 5))["data"][0]["tradeId"] == "1"
        await asyncio.to_thread(exchange.emit_items, "I-USDT", items)
        for ws, channel in ((business, "trades-all"), (public, "trades")):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert frame == {"arg": {"channel": channel, "instId": "I-USDT"}, "data": items}
        # Over HTTP (a simulator in its own process).
        status, body = await asyncio.to_thread(
            call, exchange.rest_url, "/sim/items?" + urllib.parse.urlencode({"symbol": "I-USDT", "items": json.dumps(more)}))
        assert (status, body["pushed"]) == (200, 1)
        frame = json.loads(await asyncio.wait_for(business.recv(), 5))
        assert frame == {"arg": {"channel": "trades-all", "instId": "I-USDT"}, "data": more}
        # Not the latest trade either: a new subscriber still gets the last real one.
        late = await subscribe(exchange, "I-USDT")
        assert json.loads(await asyncio.wait_for(late.recv(), 5))["data"] == latest
        for ws in (business, public, late):
            await ws.close()

    with OkxExchange(port=0, control=True) as exchange:
        asyncio.run(scenario(exchange))
        assert exchange.tape["I-USDT"] == generate("I-USDT", 1, first_id=1)
        assert served_ids(exchange, "I-USDT") == [1]
        assert call(exchange.rest_url, "/sim/items?symbol=I-USDT&items=%7B%7D")[0] == 400  # not a list


def test_hidden_trades_are_served_but_not_pushed_and_forgotten_ones_neither():
    async def scenario(exchange: OkxExchange) -> tuple[list[dict], list[dict]]:
        ws = await subscribe(exchange, "G-USDT")
        exchange.hide("G-USDT", 105, 109)
        exchange.forget("G-USDT", 115, 116)
        await asyncio.to_thread(exchange.emit, generate("G-USDT", 20, first_id=100))
        first = await pushes_until(ws, 119)
        # Hiding the latest trade hides it from a new subscriber too.
        exchange.hide("G-USDT", 131, 131)
        await asyncio.to_thread(exchange.emit, generate("G-USDT", 12, first_id=120))
        second = await pushes_until(ws, 130)
        late = await subscribe(exchange, "G-USDT")
        assert ids(json.loads(await asyncio.wait_for(late.recv(), 5))["data"]) == [130]
        exchange.clear_ranges("G-USDT")
        await asyncio.to_thread(exchange.emit, generate("G-USDT", 6, first_id=105))  # a re-print, pushed now
        second += await pushes_until(ws, 110)
        await ws.close()
        await late.close()
        return first, second

    with OkxExchange(port=0) as exchange:
        first, second = asyncio.run(scenario(exchange))
        assert ids(first) == [*range(100, 105), *range(110, 115), 117, 118, 119]
        assert ids(second) == [*range(120, 131), *range(105, 111)]
        # Hidden trades are on REST (105-109 twice: printed hidden, then re-printed), forgotten ones are not.
        assert served_ids(exchange, "G-USDT", after=132) == \
            sorted([*range(100, 115), *range(117, 132), *range(105, 111)], reverse=True)
        # Forgetting taped trades removes them from REST (and the tape).
        exchange.forget("G-USDT", 100, 101)
        assert served_ids(exchange, "G-USDT", after=104) == [103, 102]
        assert served_ids(exchange, "G-USDT", after=102) == []
        assert 100 not in ids(exchange.tape["G-USDT"]) and 102 in ids(exchange.tape["G-USDT"])


def test_holes_and_rest_faults_are_driven_over_http():
    with OkxExchange(port=0, control=True) as exchange:
        url = exchange.rest_url
        extra = urllib.parse.quote(json.dumps(["junk", {"tradeId": None}]))
        status, state = call(url, f"/sim/rest?ratio_429=0.5&lag_s=5&reach=1000&extra={extra}")
        assert status == 200 and state["ratio_429"] == 0.5 and state["lag_s"] == 5 and state["reach"] == 1000
        assert state["extra_items"] == ["junk", {"tradeId": None}] and state["down_for_s"] == 0
        assert (exchange.rest_429_ratio, exchange.rest_lag_s, exchange.history_reach) == (0.5, 5, 1000)
        assert exchange.rest_extra_items == ["junk", {"tradeId": None}]
        # All parameters are checked before any is set.
        for bad in ("ratio_429=1.5&lag_s=1", "lag_s=-1", "down_s=abc", "reach=-3", "reach=x", "extra=%7B%7D",
                    "extra=not-json", "lag_s=1&reach=1.5"):
            status, body = call(url, f"/sim/rest?{bad}")
            assert status == 400 and "bad parameters" in body["error"], bad
        assert (exchange.rest_429_ratio, exchange.rest_lag_s, exchange.history_reach) == (0.5, 5, 1000)
        state = call(url, "/sim/rest?ratio_429=0&lag_s=0&reach=none&extra=%5B%5D")[1]
        assert (state["ratio_429"], state["lag_s"], state["reach"], state["extra_items"]) == (0, 0, None, [])
        assert call(url, "/sim/rest?reach=")[1]["reach"] is None

        assert call(url, "/sim/hide?symbol=C-USDT&first_id=3&last_id=4")[0] == 200
        assert call(url, "/sim/forget?symbol=C-USDT&first_id=6&last_id=6")[0] == 200
        assert call(url, "/sim/forget?symbol=C-USDT&first_id=6")[0] == 400
        exchange.emit(generate("C-USDT", 8, first_id=1))
        assert served_ids(exchange, "C-USDT") == [8, 7, 5, 4, 3, 2, 1]
        assert call(url, "/sim/clear?symbol=C-USDT")[0] == 200
        exchange.emit(generate("C-USDT", 1, first_id=6))
        assert served_ids(exchange, "C-USDT") == [8, 7, 6, 5, 4, 3, 2, 1]
        assert call(url, "/sim/status")[1]["rest"]["rest_requests"] == 2
    with OkxExchange(port=0) as exchange:  # no control plane unless asked for
        assert call(exchange.rest_url, "/sim/rest?down_s=60")[0] == 404
        assert call(exchange.rest_url, history_path("C-USDT"))[0] == 200


def test_a_simulator_in_its_own_process_is_driven_over_http():
    process = subprocess.Popen([sys.executable, "-m", "tests.okxsim", "--port", "0", "--rate", "100",
                                "--symbols", "P-USDT", "--control"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = process.stdout.readline()
        port = int(banner.split("ws://127.0.0.1:")[1].split("/")[0])
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: len(call(url, history_path("P-USDT"))[1]["data"]) >= 20, timeout_s=15, interval_s=0.2,
                 message="live trades on the tape")
        call(url, "/sim/rest?reach=5")
        assert len(call(url, history_path("P-USDT"))[1]["data"]) == 5
        assert call(url, "/sim/rest?down_s=60")[0] == 200
        assert call(url, history_path("P-USDT"))[0] == 503
        call(url, "/sim/rest?down_s=0&ratio_429=1")
        assert call(url, history_path("P-USDT"))[0] == 429
        assert call(url, "/sim/status")[1]["rest"]["rest_throttled"] == 1
    finally:
        process.terminate()
        process.wait(10)


# -- history() on a big tape -----------------------------------------------------
def test_history_on_a_million_trade_tape_is_correct_and_cheap():
    n, first = 1_000_000, 10_000_000
    last = first + n - 1
    trades = [{"instId": "BIG-USDT", "tradeId": (s := str(i)), "px": "1.5", "sz": "0.1", "side": "buy", "ts": s}
              for i in range(first, first + n)]
    rng = random.Random(7)
    with OkxExchange(port=0) as exchange:
        started = time.perf_counter()
        for k in range(0, n, 100_000):
            exchange.emit(trades[k:k + 100_000])
        print(f"\nemit of {n:,} trades: {time.perf_counter() - started:.2f} s")
        tape = exchange.tape["BIG-USDT"]
        assert len(tape) == n and tape[0] is trades[0] and tape[-1] is trades[-1]

        afters = [rng.randint(first - 5, last + 5) for _ in range(10_000)]
        started = time.perf_counter()
        pages = [exchange.history({"instId": "BIG-USDT", "after": str(a), "limit": "100"}) for a in afters]
        elapsed = time.perf_counter() - started
        print(f"history() x {len(afters):,} on {n:,} trades: {elapsed:.3f} s, {elapsed / len(afters) * 1e6:.0f} µs each")
        for after, page in zip(afters, pages):
            top = min(after, last + 1) - 1
            assert ids(page) == list(range(top, max(top - 100, first - 1), -1)), after
        assert pages[0][0] is trades[min(afters[0], last + 1) - 1 - first]  # the taped items themselves

        def page(**query) -> list[int]:
            return ids(exchange.history({"instId": "BIG-USDT", **{k: str(v) for k, v in query.items()}}))

        assert page() == list(range(last, last - 100, -1))
        assert page(after=first + 1) == [first] and page(after=first) == [] and page(after=0) == []
        assert page(after=last + 10**9) == list(range(last, last - 100, -1))
        assert page(before=last) == [] and page(before=last - 1) == [last]
        assert page(before=first - 1) == list(range(last, last - 100, -1))  # newest first, as before
        assert page(after=500_000 + first, before=499_990 + first) == list(range(first + 499_999, first + 499_990, -1))
        assert page(after=first + 10, before=first + 10) == [] and page(after=first + 10, before=first + 8) == [first + 9]
        assert page(after=first + 700_000, limit=7) == list(range(first + 699_999, first + 699_992, -1))
        assert len(page(limit=500)) == 100 and page(limit=0) == [last] and page(limit=-5) == [last]
        assert page(after=first + 3, limit=100) == [first + 2, first + 1, first]
        assert exchange.history({"instId": "NONE-USDT"}) == []
        exchange.history_reach = 1000
        assert page(after=last - 998) == [last - 999] and page(after=last - 999) == []
        exchange.history_reach = None

        # And over HTTP, where the same page goes through the wire.
        started = time.perf_counter()
        assert served_ids(exchange, "BIG-USDT", after=first + 123_456) == list(range(first + 123_455, first + 123_355, -1))
        print(f"one history-trades request on the big tape: {(time.perf_counter() - started) * 1000:.1f} ms")


def test_history_matches_a_naive_model_with_out_of_order_and_repeated_ids():
    rng = random.Random(11)
    pool = [t for t in generate("M-USDT", 3000, first_id=1) if rng.random() < 0.7]  # ids with gaps
    emitted = pool + rng.sample(pool, 200)  # some printed twice
    rng.shuffle(emitted)
    with OkxExchange(port=0) as exchange:
        for k in range(0, len(emitted), 97):
            exchange.emit(emitted[k:k + 97])
        taped = ids(exchange.tape["M-USDT"])
        assert taped == sorted(ids(emitted))
        for _ in range(2000):
            query: dict[str, str] = {"instId": "M-USDT"}
            if rng.random() < 0.8:
                query["after"] = str(rng.randint(-10, 3100))
            if rng.random() < 0.3:
                query["before"] = str(rng.randint(-10, 3100))
            if rng.random() < 0.5:
                query["limit"] = str(rng.randint(-3, 150))
            reach = rng.choice([None, None, 0, 1, 50, 500, 5000])
            exchange.history_reach = reach
            model = sorted(ids(emitted), reverse=True)
            if reach is not None:
                model = model[:reach]
            model = [i for i in model if ("after" not in query or i < int(query["after"]))
                     and ("before" not in query or i > int(query["before"]))]
            model = model[:min(max(int(query.get("limit", "100")), 1), 100)]
            assert ids(exchange.history(query)) == model, (query, reach)

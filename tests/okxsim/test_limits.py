"""OKX's WebSocket limits on the simulated exchange, and its HTTP control for a separate
process, over real HTTP and WebSocket. Limits are configured per test (off by default)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import get_json, wait_for
from tests.okxsim import OkxExchange

REPO = Path(__file__).resolve().parents[2]


def call(base_url: str, path: str) -> tuple[int, dict]:
    return get_json(base_url + path)


def sub(*symbols: str, op: str = "subscribe") -> str:
    return json.dumps({"op": op, "args": [{"channel": "trades-all", "instId": s} for s in symbols]})


async def recv_json(ws, timeout_s: float = 5) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


# -- connection rate -----------------------------------------------------------
def test_the_fourth_connection_within_a_second_is_refused_with_429():
    async def burst(exchange: OkxExchange) -> tuple[list, float]:
        opened, outcomes = [], []
        started = time.monotonic()
        for _ in range(4):
            try:
                opened.append(await connect(exchange.ws_url()))
                outcomes.append("open")
            except InvalidStatus as exc:
                outcomes.append(exc.response.status_code)
        elapsed = time.monotonic() - started
        for ws in opened:
            await ws.close()
        return outcomes, elapsed

    with OkxExchange(port=0, connect_rate_limit=3) as exchange:
        outcomes, elapsed = asyncio.run(burst(exchange))
        print(f"4 connection attempts in {elapsed * 1000:.0f} ms: {outcomes}")
        assert outcomes == ["open", "open", "open", 429]
        assert exchange.refused_connections == 1 and exchange.limit_errors["connect_rate"] == 1
        assert exchange.connections == 3


def test_connections_spaced_within_the_rate_are_all_accepted():
    async def spaced(exchange: OkxExchange) -> int:
        opened = []
        for _ in range(6):
            opened.append(await connect(exchange.ws_url()))  # raises InvalidStatus if refused
            await asyncio.sleep(0.4)  # pacing, as a client within 3/s would
        assert len(exchange.connections_info()) == 6
        for ws in opened:
            await ws.close()
        return len(opened)

    with OkxExchange(port=0, connect_rate_limit=3) as exchange:
        assert asyncio.run(spaced(exchange)) == 6
        assert exchange.refused_connections == 0 and exchange.limit_errors == {
            "connect_rate": 0, "subscribe_ops": 0, "request_bytes": 0}


# -- subscribe/unsubscribe ops per connection --------------------------------------
async def ops_until_refused(exchange: OkxExchange, allowed: int) -> tuple[int, dict, int]:
    """Send subscribe/unsubscribe requests one by one (each acked) until refused: the
    number acked, the error event and the close code."""
    async with connect(exchange.ws_url()) as ws:
        acked = 0
        for k in range(allowed + 1):
            await ws.send(sub(f"S{k % 7}-USDT", op="unsubscribe" if k % 3 == 2 else "subscribe"))
            answer = await recv_json(ws)
            if answer["event"] == "error":
                with pytest.raises(ConnectionClosed):
                    await recv_json(ws)
                assert len(exchange.connections_info()) == 0
                return acked, answer, ws.close_code
            acked += 1
        raise AssertionError(f"{allowed + 1} ops all acked")


@pytest.mark.parametrize("limit", [12, 480])
def test_the_op_beyond_the_hourly_limit_errors_60014_and_closes(limit):
    with OkxExchange(port=0, subscribe_ops_per_hour=limit) as exchange:
        started = time.monotonic()
        acked, error, close_code = asyncio.run(ops_until_refused(exchange, limit))
        print(f"{limit + 1} ops in {time.monotonic() - started:.2f} s")
        assert acked == limit
        assert error == {"event": "error", "code": "60014", "msg": "Requests too frequent."}
        assert close_code == 1008
        assert exchange.limit_errors["subscribe_ops"] == 1
        # Counted per connection: a new connection starts afresh.
        async def fresh() -> dict:
            async with connect(exchange.ws_url()) as ws:
                await ws.send(sub("NEW-USDT"))
                answer = await recv_json(ws)
                assert exchange.connections_info()[0]["subscribe_ops"] == 1
                return answer
        assert asyncio.run(fresh())["event"] == "subscribe"
        assert exchange.limit_errors["subscribe_ops"] == 1


def test_ops_outside_the_window_no_longer_count_and_pings_never_do():
    async def scenario(exchange: OkxExchange) -> None:
        async with connect(exchange.ws_url()) as ws:
            for k in range(3):
                await ws.send(sub(f"W{k}-USDT"))
                assert (await recv_json(ws))["event"] == "subscribe"
            for _ in range(10):
                await ws.send("ping")
                assert await asyncio.wait_for(ws.recv(), 5) == "pong"
            await asyncio.sleep(exchange.subscribe_ops_window_s)  # let the window pass (a client's pacing)
            await ws.send(sub("W3-USDT"))
            assert (await recv_json(ws))["event"] == "subscribe"
            info = exchange.connections_info()
            assert info[0]["subscribe_ops"] == 4 and info[0]["symbols"] == ["W0-USDT", "W1-USDT", "W2-USDT", "W3-USDT"]

    with OkxExchange(port=0, subscribe_ops_per_hour=3) as exchange:
        exchange.subscribe_ops_window_s = 0.5
        asyncio.run(scenario(exchange))
        assert exchange.limit_errors["subscribe_ops"] == 0


# -- request size --------------------------------------------------------------
def test_a_request_over_64_kb_errors_and_one_under_is_served():
    symbols = [f"SYM{k:05d}-USDT" for k in range(1250)]  # ~67 KB as one subscribe

    async def scenario(exchange: OkxExchange) -> None:
        async with connect(exchange.ws_url()) as ws:
            big = sub(*symbols)
            assert len(big.encode()) > 65 * 1024
            await ws.send(big)
            answer = await recv_json(ws)
            assert answer["event"] == "error" and answer["code"] == "60012" and "65536" in answer["msg"]
            assert exchange.subscribed(symbols[0]) == 0
            await ws.send("ping")  # the connection stays open
            assert await asyncio.wait_for(ws.recv(), 5) == "pong"
            small = sub(*symbols[:1150])
            assert len(small.encode()) <= 65536
            await ws.send(small)
            acks = [await recv_json(ws) for _ in range(1150)]
            assert {a["event"] for a in acks} == {"subscribe"}
            assert exchange.connections_info()[0]["subscribe_ops"] == 1  # the refused one was not an op

    with OkxExchange(port=0, max_request_bytes=65536) as exchange:
        asyncio.run(scenario(exchange))
        assert exchange.limit_errors == {"connect_rate": 0, "subscribe_ops": 0, "request_bytes": 1}


def test_limits_are_off_by_default():
    async def scenario(exchange: OkxExchange) -> None:
        opened = [await connect(exchange.ws_url()) for _ in range(6)]
        ws = opened[0]
        for k in range(30):
            await ws.send(sub(f"D{k}-USDT"))
            assert (await recv_json(ws))["event"] == "subscribe"
        await ws.send(sub(*[f"BIG{k:05d}-USDT" for k in range(1600)]))
        assert {(await recv_json(ws))["event"] for _ in range(1600)} == {"subscribe"}
        for other in opened:
            await other.close()

    with OkxExchange(port=0) as exchange:
        asyncio.run(scenario(exchange))
        assert exchange.refused_connections == 0 and sum(exchange.limit_errors.values()) == 0


# -- HTTP control ----------------------------------------------------------------
def test_instruments_limits_and_market_driven_over_http():
    with OkxExchange(port=0, control=True) as exchange:
        url = exchange.rest_url
        status, body = call(url, "/sim/instruments?populate=40,20&seed=1")
        assert status == 200 and body["count"] == 60 and body["by_type"] == {"SPOT": 40, "SWAP": 20}
        assert call(url, "/api/v5/public/instruments?instType=SWAP")[1]["data"][0]["instType"] == "SWAP"
        status, record = call(url, "/sim/list?instId=NEW-USDT-SWAP&instType=SWAP&state=preopen&tickSz=0.5")
        assert status == 200 and record["state"] == "preopen" and record["tickSz"] == "0.5"
        assert record["settleCcy"] == "USDT" and record["ctValCcy"] == "NEW"
        assert call(url, "/sim/state?instId=NEW-USDT-SWAP&state=live")[1]["state"] == "live"
        assert call(url, "/sim/delist?instId=NOPE-USDT")[0] == 404
        assert call(url, "/sim/list?instId=X&state=gone")[0] == 400
        status, limits = call(url, "/sim/limits?connect_rate=3&ops_per_hour=480&max_request_bytes=65536")
        assert status == 200 and limits["connect_rate"] == 3 and limits["ops_per_hour"] == 480
        assert exchange.max_request_bytes == 65536 and exchange.subscribe_ops_per_hour == 480
        assert call(url, "/sim/limits?ops_per_hour=none")[1]["ops_per_hour"] is None
        assert call(url, "/sim/limits?connect_rate=abc")[0] == 400

        async def watch() -> dict:
            async with connect(exchange.ws_url()) as ws:
                await ws.send(sub("BTC-USDT", "NEW-USDT-SWAP"))
                assert [(await recv_json(ws))["event"] for _ in range(2)] == ["subscribe", "subscribe"]
                assert call(url, "/sim/connections")[1]["connections"][0]["symbols"] == ["BTC-USDT", "NEW-USDT-SWAP"]
                status, started = await asyncio.to_thread(call, url, "/sim/market?total_rate=600&duration=30&seed=1")
                assert status == 202 and started["busiest"][0][0] == "BTC-USDT"
                assert (await asyncio.to_thread(call, url, "/sim/market?total_rate=1"))[0] == 409
                seen: dict[str, int] = {}
                while seen.get("BTC-USDT", 0) < 50:
                    push = await recv_json(ws)
                    seen[push["arg"]["instId"]] = seen.get(push["arg"]["instId"], 0) + len(push["data"])
                # Delisted over HTTP: no longer printed.
                assert (await asyncio.to_thread(call, url, "/sim/delist?instId=BTC-USDT"))[0] == 200
                assert call(url, "/api/v5/public/instruments?instType=SPOT&instId=BTC-USDT")[0] == 400
                await asyncio.to_thread(call, url, "/sim/market?stop=1")
                return seen

        seen = asyncio.run(watch())
        def stopped() -> dict | None:
            body = call(url, "/sim/status")[1]
            return None if body["market"]["running"] else body
        status = wait_for(stopped, 10, 0.1, "the market stops")
        market = status["market"]
        print(f"market over http: {market['emitted']} trades in {market['seconds']} s over {len(market['printed'])} symbols")
        first, last, count = market["printed"]["BTC-USDT"]
        assert count == last - first + 1 >= seen["BTC-USDT"] >= 50
        assert market["emitted"] == sum(c for _, _, c in market["printed"].values())
        assert abs(market["total_rate"] - 600) < 1e-6 and market["error"] is None
        assert status["instruments"]["count"] == 60 and status["limits"]["refused_connections"] == 0
        assert call(url, "/sim/market?total_rate=-5")[0] == 400
        assert call(url, "/sim/instruments?clear=1")[1]["count"] == 0
        assert call(url, "/sim/market?total_rate=10")[0] == 400  # no live instrument


def test_a_separate_process_starts_with_a_catalogue_and_limits_over_http():
    process = subprocess.Popen([sys.executable, "-m", "tests.okxsim", "--port", "0", "--rate", "0", "--past", "0",
                                "--populate", "400,200", "--control"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = process.stdout.readline()
        port = int(banner.split("ws://127.0.0.1:")[1].split("/")[0])
        url = f"http://127.0.0.1:{port}"
        assert call(url, "/sim/status")[1]["instruments"]["by_type"] == {"SPOT": 400, "SWAP": 200}
        assert len(call(url, "/api/v5/public/instruments?instType=SPOT")[1]["data"]) == 400
        call(url, "/sim/limits?connect_rate=1")

        async def two() -> int:
            async with connect(f"ws://127.0.0.1:{port}/ws/v5/business"):
                try:
                    await connect(f"ws://127.0.0.1:{port}/ws/v5/business")
                except InvalidStatus as exc:
                    return exc.response.status_code
            return 0
        assert asyncio.run(two()) == 429
        assert call(url, "/sim/status")[1]["limits"]["refused_connections"] == 1
    finally:
        process.terminate()
        process.wait(10)

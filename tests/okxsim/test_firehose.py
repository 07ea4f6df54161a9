"""The benchmark's load generator: the simulated exchange's firehose, driven over HTTP."""

import asyncio
import json
import urllib.error
import urllib.request

from websockets.asyncio.client import connect

from tests.conftest import spare_port, wait_for
from tests.okxsim import OkxExchange


def get(exchange: OkxExchange, path: str) -> dict:
    with urllib.request.urlopen(exchange.rest_url + path, timeout=5) as response:
        return json.load(response)


def test_firehose_pushes_consecutive_trades_in_okx_frames():
    received: list[dict] = []
    frames: list[int] = []

    async def subscribe_and_fire(exchange: OkxExchange) -> int:
        async with connect(exchange.ws_url()) as ws:
            await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "trades-all", "instId": "F-USDT"}]}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["event"] == "subscribe"
            assert (await asyncio.to_thread(get, exchange, "/sim/status"))["subscribed"] == {"F-USDT": 1}
            started = await asyncio.to_thread(
                urllib.request.urlopen,
                exchange.rest_url + "/sim/firehose?symbol=F-USDT&first_id=500&rate=5000&duration=0.2&per_push=3")
            while len(received) < 300:
                push = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert push["arg"] == {"channel": "trades-all", "instId": "F-USDT"}
                frames.append(len(push["data"]))
                received.extend(push["data"])
            return started.status

    with OkxExchange(port=spare_port(), control=True) as exchange:
        assert asyncio.run(subscribe_and_fire(exchange)) == 202
        status = wait_for(lambda: get(exchange, "/sim/status") if get(exchange, "/sim/status")["firehose"] else None,
                          message="firehose finished")

    result = status["firehose"]
    ids = [int(t["tradeId"]) for t in received]
    assert ids == list(range(500, 500 + len(ids))) and len(ids) >= 300
    assert result["first_id"] == 500 and result["emitted"] == result["last_id"] - 499 >= 300
    assert max(frames) == 3 and min(frames) >= 1
    assert sum(count for _, count, _ in result["sent"]) == result["emitted"]
    for trade in received:
        assert set(trade) == {"instId", "tradeId", "px", "sz", "side", "ts"} and trade["side"] in ("buy", "sell")
        assert float(trade["px"]) > 0 and float(trade["sz"]) > 0


def test_control_endpoints_exist_only_when_asked_for_and_check_their_input():
    with OkxExchange(port=spare_port()) as exchange:
        try:
            urllib.request.urlopen(exchange.rest_url + "/sim/status", timeout=5)
            raise AssertionError("/sim/status answered without control=True")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
    with OkxExchange(port=spare_port(), control=True) as exchange:
        try:
            urllib.request.urlopen(exchange.rest_url + "/sim/firehose?symbol=X-USDT&rate=abc", timeout=5)
            raise AssertionError("bad firehose parameters accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400 and "bad parameters" in json.load(exc)["error"]

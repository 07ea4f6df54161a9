"""The simulated exchange's instrument catalogue and skewed market, over real HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
import re
import time
from decimal import Decimal

from websockets.asyncio.client import connect

from tests.conftest import get_json, wait_for
from tests.okxsim import OkxExchange, trade_rates

INSTRUMENTS = "/api/v5/public/instruments"


def call(base_url: str, path: str) -> tuple[int, dict]:
    return get_json(base_url + path)


def served(exchange: OkxExchange, inst_type: str, inst_id: str = "") -> list[dict]:
    status, body = call(exchange.rest_url, f"{INSTRUMENTS}?instType={inst_type}" + (f"&instId={inst_id}" if inst_id else ""))
    assert status == 200 and body["code"] == "0", (status, body)
    return body["data"]


async def recv_json(ws, timeout_s: float = 5) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def subscribe(ws, *symbols: str) -> list[dict]:
    await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "trades-all", "instId": s} for s in symbols]}))
    return [await recv_json(ws) for _ in symbols]


def test_a_populated_catalogue_is_served_by_type_and_id_with_okx_fields():
    with OkxExchange(port=0) as exchange:
        exchange.populate(400, 200, seed=1)
        spot, swap = served(exchange, "SPOT"), served(exchange, "SWAP")
        assert len(spot) == 400 and len(swap) == 200 and served(exchange, "FUTURES") == []
        assert {r["instType"] for r in spot} == {"SPOT"} and {r["instType"] for r in swap} == {"SWAP"}
        ids = [r["instId"] for r in spot + swap]
        assert len(set(ids)) == 600
        assert all(re.fullmatch(r"[A-Z]{2,5}-(USDT|USDC|BTC)", r["instId"]) for r in spot), ids[:400]
        assert all(re.fullmatch(r"[A-Z]{2,5}-(USDT|USD)-SWAP", r["instId"]) for r in swap), ids[400:]
        assert {"BTC-USDT", "ETH-USDT", "BTC-USDC", "BTC-USDT-SWAP", "ETH-USDT-SWAP"} <= set(ids)
        assert sum(r["instId"].endswith("-USDC") for r in spot) >= 50
        states = [r["state"] for r in spot + swap]
        assert {"live", "suspend", "preopen"} == set(states) and states.count("live") >= 550
        for record in spot + swap:
            assert all(isinstance(v, str) for v in record.values()), record
            tick, lot, min_sz = Decimal(record["tickSz"]), Decimal(record["lotSz"]), Decimal(record["minSz"])
            assert tick > 0 and lot > 0 and min_sz >= lot, record
            assert int(record["listTime"]) > 1_500_000_000_000
        btc = served(exchange, "SPOT", "BTC-USDT")
        assert len(btc) == 1 and btc[0]["baseCcy"] == "BTC" and btc[0]["quoteCcy"] == "USDT"
        assert btc[0]["tickSz"] == "0.1" and btc[0]["settleCcy"] == "" and btc[0]["state"] == "live"
        perp = served(exchange, "SWAP", "BTC-USDT-SWAP")[0]
        assert (perp["settleCcy"], perp["ctVal"], perp["ctValCcy"], perp["baseCcy"], perp["ctType"]) == \
            ("USDT", "0.01", "BTC", "", "linear")
        eth = served(exchange, "SPOT", "ETH-USDT")[0]
        assert Decimal(eth["tickSz"]) < Decimal(btc[0]["tickSz"])  # tick size follows the price level
        assert exchange.instrument_served == 6 and exchange.instrument_requests == 6
        # Deterministic per seed, different across seeds.
        again = OkxExchange(port=0)
        assert [r["instId"] for r in again.populate(400, 200, seed=1)] == ids
        assert [r["instId"] for r in again.populate(400, 200, seed=2)] != ids


def test_instruments_answers_okx_errors_and_rate_limits_per_inst_type():
    with OkxExchange(port=0) as exchange:
        exchange.list_instrument("ABC-USDT")
        assert call(exchange.rest_url, INSTRUMENTS) == (
            400, {"code": "50014", "msg": "Parameter instType can not be empty.", "data": []})
        status, body = call(exchange.rest_url, INSTRUMENTS + "?instType=STOCK")
        assert status == 400 and body["code"] == "51000"
        status, body = call(exchange.rest_url, INSTRUMENTS + "?instType=SPOT&instId=NOPE-USDT")
        assert status == 400 and body["code"] == "51001" and body["data"] == []
        # 20 per 2 s per instType: the 21st SPOT request is refused, SWAP still answers.
        answers = [call(exchange.rest_url, INSTRUMENTS + "?instType=SPOT")[0] for _ in range(21)]
        assert answers.count(429) >= 1 and answers[:18] == [200] * 18, answers
        assert call(exchange.rest_url, INSTRUMENTS + "?instType=SWAP")[0] == 200
        status, body = call(exchange.rest_url, INSTRUMENTS + "?instType=SPOT")
        assert (status, body) == (429, {"code": "50011", "msg": "Too Many Requests", "data": []})
        assert exchange.instrument_throttled >= 2
        # ... and once the window has passed, SPOT is served again.
        assert wait_for(lambda: call(exchange.rest_url, INSTRUMENTS + "?instType=SPOT")[0] == 200, 10, 0.5)
        # The REST faults apply: an outage 503s, the 429 ratio refuses that share.
        exchange.rest_outage(30)
        assert call(exchange.rest_url, INSTRUMENTS + "?instType=SWAP")[0] == 503
        exchange.rest_outage(0)
        exchange.rest_429_ratio = 0.5
        assert [call(exchange.rest_url, INSTRUMENTS + "?instType=SWAP")[0] for _ in range(4)] == [200, 429] * 2
        exchange.rest_429_ratio = 0
        # The history-trades rate limit is its own: instruments requests did not use it up.
        assert call(exchange.rest_url, "/api/v5/market/history-trades?instId=ABC-USDT")[0] == 200


def test_subscribing_checks_the_catalogue_and_delisting_stops_printing():
    async def scenario(exchange: OkxExchange) -> None:
        async with connect(exchange.ws_url()) as ws:
            acks = await subscribe(ws, "AAA-USDT", "BBB-USDT", "NOPE-USDT", "SUS-USDT")
            assert [a.get("event") for a in acks] == ["subscribe", "subscribe", "error", "error"]
            assert {a["code"] for a in acks[2:]} == {"60018"} and "NOPE-USDT" in acks[2]["msg"]
            assert exchange.subscribed("NOPE-USDT") == 0 and exchange.subscribed("SUS-USDT") == 0
            await asyncio.to_thread(exchange.start_market, {"AAA-USDT": 200, "BBB-USDT": 200, "NOPE-USDT": 200})
            seen: dict[str, list[int]] = {"AAA-USDT": [], "BBB-USDT": []}

            async def read_until(check) -> None:
                while not check():
                    push = await recv_json(ws)
                    seen[push["arg"]["instId"]].extend(int(t["tradeId"]) for t in push["data"])

            await read_until(lambda: len(seen["AAA-USDT"]) >= 20 and len(seen["BBB-USDT"]) >= 20)
            await asyncio.to_thread(exchange.delist, "BBB-USDT")
            printed = await asyncio.to_thread(exchange.market_printed)
            last_bbb = printed["BBB-USDT"][-1]
            await read_until(lambda: len(seen["AAA-USDT"]) >= len(printed["AAA-USDT"]) + 100)
            # BBB printed nothing more (the last one may have been in flight); AAA carried on.
            assert (await asyncio.to_thread(exchange.market_printed))["BBB-USDT"][-1] == last_bbb
            assert seen["BBB-USDT"][-1] == last_bbb
            # Subscribing to it now fails; the REST catalogue no longer has it.
            await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "trades-all", "instId": "BBB-USDT"}]}))
            while (answer := await recv_json(ws)).get("event") is None:
                pass  # AAA's pushes
            assert answer["event"] == "error" and answer["code"] == "60018"
            # Listed again (and a suspended one made live): printing resumes where the ids left off.
            await asyncio.to_thread(exchange.list_instrument, "BBB-USDT")
            await asyncio.to_thread(exchange.set_state, "SUS-USDT", "live")
            await asyncio.to_thread(exchange.market_rate, "SUS-USDT", 100)
            await subscribe(ws, "SUS-USDT")
            seen["SUS-USDT"] = []
            await read_until(lambda: len(seen["BBB-USDT"]) >= 40 and len(seen["SUS-USDT"]) >= 5)
        result = await asyncio.to_thread(exchange.stop_market)
        assert "NOPE-USDT" not in result  # never listed: never printed
        for symbol in ("AAA-USDT", "BBB-USDT", "SUS-USDT"):
            assert result[symbol] == list(range(result[symbol][0], result[symbol][-1] + 1))
        assert seen["BBB-USDT"] == result["BBB-USDT"][:len(seen["BBB-USDT"])]

    with OkxExchange(port=0) as exchange:
        exchange.list_instrument("AAA-USDT")
        exchange.list_instrument("BBB-USDT")
        exchange.list_instrument("SUS-USDT", state="suspend")
        asyncio.run(scenario(exchange))
        assert [r["instId"] for r in served(exchange, "SPOT")] == ["AAA-USDT", "SUS-USDT", "BBB-USDT"]
        exchange.delist("BBB-USDT")
        status, body = call(exchange.rest_url, INSTRUMENTS + "?instType=SPOT&instId=BBB-USDT")
        assert status == 400 and body["code"] == "51001"


def test_without_a_catalogue_any_symbol_is_accepted_as_before():
    async def scenario(exchange: OkxExchange) -> list[dict]:
        async with connect(exchange.ws_url()) as ws:
            return await subscribe(ws, "ANY-THING", "HIDDEN-USDT")

    with OkxExchange(port=0) as exchange:
        exchange.unknown_symbols.add("HIDDEN-USDT")
        acks = asyncio.run(scenario(exchange))
        assert [a["event"] for a in acks] == ["subscribe", "error"] and acks[1]["code"] == "60018"
        assert exchange.catalogue_active is False and served(exchange, "SPOT") == []


def test_unsubscribe_acks_and_stops_the_pushes():
    async def scenario(exchange: OkxExchange) -> None:
        async with connect(exchange.ws_url()) as ws:
            await subscribe(ws, "U-USDT", "V-USDT")
            await asyncio.to_thread(exchange.start_market, {"U-USDT": 300, "V-USDT": 300})
            await ws.send(json.dumps({"op": "unsubscribe", "args": [{"channel": "trades-all", "instId": "U-USDT"}]}))
            while (answer := await recv_json(ws)).get("event") is None:
                pass
            assert answer["event"] == "unsubscribe" and answer["arg"] == {"channel": "trades-all", "instId": "U-USDT"}
            conn_id = answer["connId"]
            assert re.fullmatch(r"[0-9a-f]{8}", conn_id)
            assert exchange.subscribed("U-USDT") == 0 and exchange.subscribed("V-USDT") == 1
            info = await asyncio.to_thread(exchange.connections_info)
            assert [(c["connId"], c["symbols"], c["subscribe_ops"]) for c in info] == [(conn_id, ["V-USDT"], 2)]
            assert time.time() - 60 < info[0]["opened_at"] <= time.time()
            printed_u = len((await asyncio.to_thread(exchange.market_printed)).get("U-USDT", []))
            after = {"U-USDT": 0, "V-USDT": 0}
            while after["V-USDT"] < 200:
                push = await recv_json(ws)
                after[push["arg"]["instId"]] += len(push["data"])
            assert len((await asyncio.to_thread(exchange.market_printed))["U-USDT"]) > printed_u  # still printing
            assert after["U-USDT"] == 0
        await asyncio.to_thread(exchange.stop_market)

    with OkxExchange(port=0) as exchange:
        asyncio.run(scenario(exchange))


def test_trade_rates_are_zipf_like_and_sum_to_the_total():
    catalogue = OkxExchange(port=0).populate(400, 200, seed=3)
    symbols = [r["instId"] for r in catalogue]
    rates = trade_rates(2000, symbols, seed=3)
    assert set(rates) == set(symbols) and abs(sum(rates.values()) - 2000) < 1e-6
    ordered = list(rates.values())
    assert ordered == sorted(ordered, reverse=True) and next(iter(rates)) == "BTC-USDT"
    top10 = sum(ordered[:10])
    tail = sum(ordered[300:])
    print(f"busiest {ordered[0]:.1f}/s, top 10 {top10:.0f}/s, quietest {ordered[-1]:.2f}/s, bottom 300 {tail:.0f}/s")
    assert ordered[0] > 100 * ordered[-1] and top10 > 0.3 * 2000 and ordered[-1] > 0
    assert trade_rates(2000, symbols, seed=3) == rates and trade_rates(2000, symbols, seed=4) != rates
    assert sum(trade_rates(0, symbols).values()) == 0 and trade_rates(10, []) == {}


def test_the_skewed_market_prints_consecutive_ids_per_symbol_taped_and_pushed():
    async def scenario(exchange: OkxExchange, rates: dict[str, float]) -> dict[str, list[int]]:
        async with connect(exchange.ws_url()) as ws:
            await ws.send(json.dumps({"op": "subscribe",
                                      "args": [{"channel": "trades-all", "instId": s} for s in rates]}))
            await asyncio.to_thread(exchange.start_market, rates, 2.0)
            got: dict[str, list[int]] = {}
            while True:
                try:
                    message = await recv_json(ws, 2)
                except TimeoutError:
                    return got
                if "data" in message:
                    got.setdefault(message["arg"]["instId"], []).extend(int(t["tradeId"]) for t in message["data"])
                    assert all(t["instId"] == message["arg"]["instId"] for t in message["data"])

    with OkxExchange(port=0) as exchange:
        exchange.populate(150, 50, seed=1)
        live = exchange.live_instruments()
        rates = trade_rates(1500, live, seed=1)
        exchange.list_instrument("OLD-USDT")
        exchange.emit([{"instId": "OLD-USDT", "tradeId": "41", "px": "1", "sz": "1", "side": "buy", "ts": "1"}])
        rates["OLD-USDT"] = 5.0
        started = time.time()
        got = asyncio.run(scenario(exchange, rates))
        wait_for(lambda: not exchange.market_running, 10, 0.05, "the market ends")
        printed = exchange.stop_market()
        state = exchange.market_state()
        print(f"market: {state['emitted']} trades over {len(printed)} symbols in {state['seconds']} s "
              f"({state['achieved_rate']}/s asked {state['total_rate']:.0f}/s)")
        assert got.pop("OLD-USDT")[0] == 41  # OKX re-sends the latest trade on subscribe
        assert got == {s: ids for s, ids in printed.items() if s != "OLD-USDT"}  # every trade pushed, in order
        for symbol, ids in printed.items():
            assert ids == list(range(ids[0], ids[0] + len(ids))), symbol
            tape = exchange.tape[symbol]
            assert [int(t["tradeId"]) for t in tape[-len(ids):]] == ids
            assert all(started * 1000 - 1000 <= int(t["ts"]) <= time.time() * 1000 for t in tape[-len(ids):])
        assert printed["OLD-USDT"][0] == 42  # ids continue from the tape
        counts = {s: len(ids) for s, ids in printed.items()}
        busiest = next(iter(rates))
        assert max(counts, key=counts.get) == busiest == "BTC-USDT"
        assert counts[busiest] >= 0.5 * rates[busiest] * 2.0
        assert counts[busiest] > 20 * min(counts.values())  # a long quiet tail
        assert sum(counts.values()) > 0.5 * sum(rates.values()) * 2.0
        # Served over REST like any printed trade.
        status, body = call(exchange.rest_url, f"/api/v5/market/history-trades?instId={busiest}&limit=5")
        assert status == 200 and [int(t["tradeId"]) for t in body["data"]] == printed[busiest][::-1][:5]
        # A second run carries on each symbol's ids.
        again = exchange.market({busiest: 500}, 0.3)
        assert again[busiest][0] == printed[busiest][-1] + 1

"""Feeding the real pipeline for the serving tests, and candles computed independently.

``Pipeline`` runs the simulated OKX exchange, a fresh topic, a consumer and a producer
subscribed to a fixed list of symbols, for tests that share one data set per module.
``expected_candles`` aggregates OKX trade dicts in plain Python, the yardstick the
api's answers are compared with.
"""

from __future__ import annotations

import dataclasses
import json
import random
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal

import pytest

from stack import components as c
from stack.process import Process
from tests.conftest import TEST_PORTS, spare_port, sql, unique, wait_for
from tests.okxsim import OkxExchange

INTERVAL_SECONDS = {"1s": 1, "5s": 5, "15s": 15, "1m": 60, "5m": 300, "15m": 900, "30m": 1800,
                    "1h": 3600, "4h": 14400, "1d": 86400}


class Pipeline:
    def __init__(self, symbols: list[str], log_dir) -> None:
        self.symbols = symbols
        self.log_dir = log_dir
        self.exchange = OkxExchange(port=0)
        self.processes: list[Process] = []

    def start(self) -> Pipeline:
        self.exchange.start()
        topic = unique("serving-")
        c.ensure_topics(TEST_PORTS.kafka, {topic: 3, f"{topic}.dlq": 1})
        env = c.service_env(
            TEST_PORTS, KAFKA_TOPIC=topic, KAFKA_DLQ_TOPIC=f"{topic}.dlq", KAFKA_GROUP_ID=f"{topic}-group",
            OKX_WS_URL=self.exchange.ws_url(), OKX_REST_URL=self.exchange.rest_url, SYMBOLS=",".join(self.symbols),
        )
        # Health ports of their own: the `services` fixture's producer and consumer may run
        # beside these (this pipeline lives for the whole session).
        ports = dataclasses.replace(TEST_PORTS, producer=spare_port(), consumer=spare_port())
        for name in ("consumer", "producer"):
            process = Process(getattr(c, name)(ports, env), self.log_dir)
            self.processes.append(process.start())
            process.wait_ready(60)
        wait_for(lambda: all(self.exchange.subscribed(s) for s in self.symbols), 30, message="producer subscribed")
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.exchange.stop()

    def feed(self, trades: list[dict]) -> None:
        """Emit trades and wait until QuestDB holds all of them."""
        self.exchange.emit(trades)
        counts: dict[str, int] = {}
        for trade in trades:
            counts[trade["instId"]] = counts.get(trade["instId"], 0) + 1
        for symbol in counts:
            total = len(self.exchange.tape[symbol])
            wait_for(lambda: sql(f"SELECT count() n FROM trades WHERE symbol = '{symbol}'")[0]["n"] >= total,
                     60, message=f"{total} trades of {symbol} in QuestDB")


def insert_trade(symbol: str, trade_id: int, price: float, size: float, at_s: float) -> None:
    """One trade straight into QuestDB (as the consumer would write it), then wait until it
    is applied to the table and the 1m view."""
    query = (f"INSERT INTO trades (symbol, side, trade_id, price, size, fills, received_at, timestamp) VALUES "
             f"('{symbol}', 'buy', {trade_id}, {price}, {size}, 1, {int(at_s * 1e6)}, {int(at_s * 1e6)})")
    url = f"http://127.0.0.1:{TEST_PORTS.questdb_http}/exec?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200, response.read()
    wait_for(lambda: sql(f"SELECT count() n FROM trades WHERE symbol = '{symbol}' AND trade_id = {trade_id}")[0]["n"] == 1,
             60, message=f"trade {trade_id} of {symbol} in QuestDB")
    wait_for(lambda: _view_trades(symbol) == _table_trades(symbol), 60, message=f"the 1m view to hold {symbol}")


def _table_trades(symbol: str) -> int:
    return sql(f"SELECT count() n FROM trades WHERE symbol = '{symbol}'")[0]["n"]


def _view_trades(symbol: str) -> int:
    rows = sql(f"SELECT sum(trades) n FROM candles_1m WHERE symbol = '{symbol}'")
    return rows[0]["n"] if rows and rows[0]["n"] is not None else 0


def spread_trades(symbol: str, start_ms: int, span_s: int, n: int, seed: int = 7, first_id: int = 5_000_000) -> list[dict]:
    """``n`` trades with consecutive ids over ``span_s`` seconds from ``start_ms``, in
    clusters (several in one second, some in one millisecond) with long quiet gaps."""
    rng = random.Random(seed)
    times = sorted(start_ms + rng.randrange(span_s * 1000) for _ in range(n // 3))
    stamps: list[int] = []
    for t in times:  # a burst around each time
        for k in range(rng.randint(1, 5)):
            stamps.append(t + rng.choice((0, 0, 1, 37, 450)) * k)
    stamps = sorted(stamps)[:n]
    price = 30_000.0
    out = []
    for i, ts in enumerate(stamps):
        price = round(max(1.0, price + rng.randint(-40, 40) * 0.1), 1)
        size = f"{rng.uniform(0.00001, 0.8):.8f}".rstrip("0").rstrip(".")
        out.append({"instId": symbol, "tradeId": str(first_id + i), "px": f"{price:.1f}", "sz": size,
                    "side": rng.choice(("buy", "sell")), "ts": str(ts)})
    return out


def expected_candles(trades: list[dict], interval: str) -> list[dict]:
    """OHLCV per calendar-aligned UTC bucket, ascending; first/last by (time, trade id)."""
    step = INTERVAL_SECONDS[interval]
    buckets: dict[int, list[dict]] = {}
    for trade in sorted(trades, key=lambda t: (int(t["ts"]), int(t["tradeId"]))):
        buckets.setdefault(int(t_s(trade)) // step * step, []).append(trade)
    out = []
    for start in sorted(buckets):
        group = buckets[start]
        prices = [float(t["px"]) for t in group]
        out.append({
            "time": start, "open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1],
            "volume": float(sum(Decimal(t["sz"]) for t in group)),
        })
    return out


def t_s(trade: dict) -> int:
    return int(trade["ts"]) // 1000


def assert_candles_equal(got: list[dict], want: list[dict]) -> None:
    assert [c["time"] for c in got] == [c["time"] for c in want]
    for g, w in zip(got, want):
        assert set(g) == {"time", "open", "high", "low", "close", "volume"}
        assert all(isinstance(g[k], (int, float)) and not isinstance(g[k], bool) for k in g)
        for key in ("open", "high", "low", "close"):
            assert g[key] == w[key], (g, w)
        assert g["volume"] == pytest.approx(w["volume"], rel=1e-9), (g, w)


def get(port: int, path: str) -> tuple[int, object]:
    """(status, decoded JSON body) of a GET."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=15) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body.decode(errors="replace")

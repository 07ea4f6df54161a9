"""One pipeline for the serving tests: exchange -> producer -> Kafka -> consumer
-> QuestDB, with the data sets the tests read through the api."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from tests.api.pipeline import Pipeline, spread_trades
from tests.conftest import sql, unique, wait_for
from tests.okxsim import load_recording


@dataclass
class Market:
    pipeline: Pipeline
    recording: str  # the 69 recorded BTC-USDT trades of 2022-05-13 16:27 UTC
    spread: str  # ~600 trades over two and a half days
    live: str  # a few trades now, more sent by the stream tests
    trades: dict[str, list[dict]]


def _view_complete(symbol: str, n: int) -> bool:
    rows = sql(f"SELECT sum(trades) n FROM candles_1m WHERE symbol = '{symbol}'")
    return bool(rows) and rows[0]["n"] == n


@pytest.fixture(scope="session")
def market(api, kafka, questdb, stack_dir) -> Market:
    names = {key: unique(prefix) + "-USDT" for key, prefix in (("recording", "REC"), ("spread", "SPR"), ("live", "LIV"))}
    pipeline = Pipeline(list(names.values()), stack_dir / "logs" / f"serving-{names['live']}").start()
    try:
        trades = {
            names["recording"]: [{**t, "instId": names["recording"]} for t in load_recording()],
            # 2024-03-09 20:00 UTC onwards: crosses 4h and day boundaries.
            names["spread"]: spread_trades(names["spread"], 1_710_014_400_000, int(2.5 * 86400), 600),
            names["live"]: spread_trades(names["live"], int(time.time() * 1000) - 600_000, 540, 30, seed=3),
        }
        for batch in trades.values():
            pipeline.feed(batch)
        for symbol, batch in trades.items():
            wait_for(lambda: _view_complete(symbol, len(batch)), 60, message=f"the 1m view to hold {symbol}")
        yield Market(pipeline, names["recording"], names["spread"], names["live"], trades)
    finally:
        pipeline.stop()

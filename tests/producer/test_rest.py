"""The REST queue against the simulated exchange: priorities, OKX's rate limit, outages,
lagging history and ids beyond its reach."""

import threading

import pytest

from gostream.producer.rest import Fill, HistoryFetcher, Priority
from tests.conftest import wait_for
from tests.okxsim import generate

SYMBOL = "REST-USDT"


@pytest.fixture
def printed(exchange):
    trades = generate(SYMBOL, 3000, first_id=1)
    exchange.emit(trades)
    return trades


class Collector:
    def __init__(self):
        self.trades, self.done, self.lock = [], [], threading.Lock()

    def on_trade(self, trade):
        with self.lock:
            self.trades.append(trade)

    def on_done(self, job):
        with self.lock:
            self.done.append(job)


@pytest.fixture
def fetcher(exchange):
    got = Collector()
    fetcher = HistoryFetcher(exchange.rest_url, got.on_trade, min_spacing_s=0.01).start()
    fetcher.got = got
    yield fetcher
    fetcher.close()


def ids(trades):
    return sorted(t.trade_id for t in trades)


def test_a_fill_fetches_exactly_its_ids_with_their_values(fetcher, printed):
    job = fetcher.submit(Fill(SYMBOL, 1001, 1350, Priority.LIVE, on_done=fetcher.got.on_done))
    wait_for(lambda: fetcher.got.done, message="the fill finished")
    assert job.complete and not job.error and job.pages == 4
    assert ids(fetcher.got.trades) == list(range(1001, 1351))
    by_id = {int(t["tradeId"]): t for t in printed}
    assert all((t.price, t.size, t.side, t.ts_ms) == (float(by_id[t.trade_id]["px"]), float(by_id[t.trade_id]["sz"]),
                                                     by_id[t.trade_id]["side"], int(by_id[t.trade_id]["ts"]))
               for t in fetcher.got.trades)


def test_a_live_gap_goes_before_the_rest_of_a_long_hole_fill(fetcher, printed):
    hole = fetcher.submit(Fill(SYMBOL, 1, 2500, Priority.HOLE, on_done=fetcher.got.on_done))
    wait_for(lambda: hole.pages >= 2, message="the hole fill under way")
    live = fetcher.submit(Fill(SYMBOL, 2801, 2850, Priority.LIVE, on_done=fetcher.got.on_done))
    wait_for(lambda: len(fetcher.got.done) == 2, timeout_s=60, message="both fills finished")
    assert fetcher.got.done == [live, hole]
    assert live.complete and hole.complete and hole.pages == 25


def test_rate_limited_half_the_time_still_gets_everything(exchange, fetcher, printed):
    exchange.rest_429_ratio = 0.5
    job = fetcher.submit(Fill(SYMBOL, 1001, 1500, Priority.HOLE, on_done=fetcher.got.on_done))
    wait_for(lambda: fetcher.got.done, timeout_s=90, message="the fill finished")
    assert job.complete and ids(fetcher.got.trades) == list(range(1001, 1501))
    assert exchange.rest_throttled >= 4


def test_an_outage_makes_a_fill_give_up_and_say_why(exchange, fetcher, printed):
    exchange.rest_outage(120)
    job = fetcher.submit(Fill(SYMBOL, 1001, 1100, Priority.LIVE, max_failures=3, on_done=fetcher.got.on_done))
    wait_for(lambda: fetcher.got.done, timeout_s=60, message="the fill gave up")
    assert not job.complete and job.found == 0 and "3 failed requests" in job.error and "503" in job.error
    assert exchange.rest_failed == 3


def test_lagging_history_finds_only_what_it_serves(exchange, fetcher):
    exchange.rest_lag_s = 10
    exchange.emit(generate(SYMBOL, 100, first_id=1))
    wait_for(lambda: exchange.history({"instId": SYMBOL, "after": "101"}), timeout_s=30, message="older trades served")
    exchange.emit(generate(SYMBOL, 100, first_id=101))  # not served for the next 10 s
    job = fetcher.submit(Fill(SYMBOL, 150, 199, Priority.LIVE, on_done=fetcher.got.on_done))
    wait_for(lambda: fetcher.got.done, message="the fill finished")
    assert (job.found, job.complete, job.exhausted, job.error) == (0, False, False, None)


def test_ids_beyond_okx_history_are_reported_exhausted(exchange, fetcher, printed):
    exchange.history_reach = 1000  # only ids 2001..3000 are still served
    job = fetcher.submit(Fill(SYMBOL, 1901, 2100, Priority.HOLE, on_done=fetcher.got.on_done))
    wait_for(lambda: fetcher.got.done, message="the fill finished")
    assert job.exhausted and job.found == 100 and ids(fetcher.got.trades) == list(range(2001, 2101))


def test_bad_items_in_a_page_are_skipped_and_the_rest_kept(exchange, fetcher, printed):
    exchange.rest_extra_items = [{"instId": SYMBOL, "tradeId": "1050", "px": ".", "sz": "1", "side": "buy",
                                  "ts": "1700000000000"}, "garbage", None, [1, 2]]
    job = fetcher.submit(Fill(SYMBOL, 1001, 1100, Priority.LIVE, on_done=fetcher.got.on_done))
    wait_for(lambda: fetcher.got.done, message="the fill finished")
    assert job.complete and ids(fetcher.got.trades) == list(range(1001, 1101))
    assert next(t for t in fetcher.got.trades if t.trade_id == 1050).price == float(printed[1049]["px"])

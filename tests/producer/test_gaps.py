from gostream.common.trade import Trade
from gostream.producer.gaps import Continuity, Gap


def t(trade_id: int, count: int = 1, symbol: str = "BTC-USDT") -> Trade:
    return Trade(symbol, trade_id, 1.0, 1.0, "buy", 1_700_000_000_000, 1, count)


def test_consecutive_ids_open_no_gap():
    c = Continuity()
    assert [c.observe(t(i)) for i in (10, 11, 12)] == [(True, None)] * 3


def test_a_skip_opens_a_gap_of_the_missing_ids():
    c = Continuity()
    c.observe(t(10))
    assert c.observe(t(15)) == (True, Gap("BTC-USDT", 11, 14))
    assert Gap("BTC-USDT", 11, 14).size == 4


def test_repeats_are_not_new_and_open_no_gap():
    c = Continuity()
    c.observe(t(10))
    c.observe(t(11))
    assert c.observe(t(11)) == (False, None)  # re-sent on subscribe
    assert c.observe(t(5)) == (False, None)
    assert c.observe(t(12)) == (True, None)


def test_aggregated_trades_cover_count_ids():
    c = Continuity()
    c.observe(t(10))
    assert c.observe(t(14, count=4)) == (True, None)  # fills 11..14
    assert c.observe(t(20, count=3)) == (True, Gap("BTC-USDT", 15, 17))  # fills 18..20


def test_symbols_are_independent():
    c = Continuity()
    c.observe(t(10, symbol="BTC-USDT"))
    assert c.observe(t(500, symbol="ETH-USDT")) == (True, None)
    assert c.observe(t(11, symbol="BTC-USDT")) == (True, None)


def test_ids_more_than_a_few_below_are_another_feed_taken_and_reported():
    c = Continuity()
    c.observe(t(500))  # where the store says the symbol stopped
    assert c.observe(t(495)) == (False, None)  # within the few ids OKX may re-send
    assert c.regressions == []
    assert c.observe(t(200)) == (True, None)  # a reset: 300 below, a quiet symbol's whole feed
    assert [(r.from_id, r.to_id) for r in c.regressions] == [(500, 200)]
    assert c.observe(t(201)) == (True, None) and c.observe(t(201)) == (False, None)

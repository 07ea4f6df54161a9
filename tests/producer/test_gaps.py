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

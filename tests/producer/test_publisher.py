"""The publisher against a real Kafka: what is queued together goes out as one record per
symbol, in order, and every trade is accounted for."""

from gostream.common.trade import Trade, decode
from gostream.producer.publisher import Publisher
from tests.conftest import TEST_PORTS, read_topic, wait_for


def trade(symbol: str, trade_id: int) -> Trade:
    return Trade(symbol, trade_id, 100.0, 0.5, "buy", 1_700_000_000_000 + trade_id, 1_700_000_000_000_000)


def test_queued_trades_become_one_record_per_symbol_up_to_the_batch_limit(topic):
    publisher = Publisher({"bootstrap_servers": f"127.0.0.1:{TEST_PORTS.kafka}"}, topic, buffer_max=10_000, batch_max=500)
    # Queued before the thread starts: the first take finds all of them waiting.
    for i in range(1, 1001):
        assert publisher.offer(trade(("A-USDT", "B-USDT")[i % 2], i))
    publisher.start()
    publisher.close(timeout_s=30)
    assert (publisher.published, publisher.dropped, publisher.failed) == (1000, 0, 0)

    records = read_topic(topic)
    sizes = sorted(len(decode(r.value)) for r in records)
    assert sizes == [250, 250, 250, 250]  # 2 takes of 500, each split over 2 symbols
    for symbol in ("A-USDT", "B-USDT"):
        mine = [r for r in records if r.key == symbol.encode()]
        assert {r.partition for r in mine} == {mine[0].partition}  # keyed by symbol
        ids = [t.trade_id for r in sorted(mine, key=lambda r: r.offset) for t in decode(r.value)]
        assert ids == list(range(1 if symbol == "B-USDT" else 2, 1001, 2))


def test_a_quiet_feed_sends_each_trade_at_once(topic):
    publisher = Publisher({"bootstrap_servers": f"127.0.0.1:{TEST_PORTS.kafka}"}, topic, buffer_max=100).start()
    for i in range(1, 4):
        publisher.offer(trade("Q-USDT", i))
        wait_for(lambda: publisher.published == i, message=f"trade {i} acknowledged before the next is offered")
    publisher.close(timeout_s=10)
    assert [len(decode(r.value)) for r in read_topic(topic)] == [1, 1, 1]

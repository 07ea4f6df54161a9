"""The consumer against a real Kafka and a real QuestDB."""

import json
import time

from kafka import KafkaConsumer, TopicPartition

from gostream.common.trade import Trade, encode, encode_batch
from tests.conftest import TEST_PORTS, metric, produce, read_topic, sql, unique, wait_for


def trades(symbol: str, n: int, first_id: int = 1) -> list[Trade]:
    # Three trades share each millisecond: the trade id must keep them apart.
    return [
        Trade(symbol, first_id + i, 100.0 + i / 10, 0.001 * (i + 1), ("buy", "sell")[i % 2],
              1_700_000_000_000 + i // 3, 1_700_000_000_500_000 + i, 1 + i % 2)
        for i in range(n)
    ]


def stored(symbol: str) -> list[dict]:
    return sql(f"select trade_id, price, size, side, fills, timestamp, received_at from trades "
               f"where symbol = '{symbol}' order by trade_id")


def as_rows(batch: list[Trade]) -> list[dict]:
    def iso(us: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 1_000_000)) + f".{us % 1_000_000:06d}Z"

    return [
        {"trade_id": t.trade_id, "price": t.price, "size": t.size, "side": t.side, "fills": t.count,
         "timestamp": iso(t.ts_ms * 1000), "received_at": iso(t.received_us)}
        for t in batch
    ]


def committed_everything(topic: str) -> bool:
    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{TEST_PORTS.kafka}", group_id=f"{topic}-group",
                             enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        end = consumer.end_offsets(partitions)
        return all((consumer.committed(tp) or 0) == end[tp] for tp in partitions)
    finally:
        consumer.close()


def test_good_records_land_exactly_and_bad_ones_go_to_the_dlq(topic, services):
    symbol = unique("C") + "-USDT"
    good = trades(symbol, 300)
    bad = [
        (b"x", b"not json at all"),
        (b"x", b'{"v":1,"symbol":"' + symbol.encode() + b'"}'),
        (b"x", json.dumps({**json.loads(encode(good[0])), "price": -5}).encode()),
        (b"x", None),
        (b"x", b"\xff\xfe\x00garbage"),
    ]
    records = [(t.symbol.encode(), encode(t)) for t in good]
    # Bad records in the middle of good ones: the batch must go on around them.
    records[100:100] = bad[:3]
    records[250:250] = bad[3:]
    produce(topic, records)

    services.start("consumer", topic)
    wait_for(lambda: len(stored(symbol)) == len(good), message="all good trades in QuestDB")
    assert stored(symbol) == as_rows(good)

    dlq = wait_for(lambda: read_topic(f"{topic}.dlq") if len(read_topic(f"{topic}.dlq")) >= 5 else None,
                   message="5 records in the DLQ")
    assert sorted((r.value or b"") for r in dlq) == sorted((v or b"") for _, v in bad)
    reasons = sorted(dict(r.headers)["error.reason"].decode() for r in dlq)
    assert reasons == sorted(["not-json", "missing-field", "bad-price", "empty", "not-json"])
    for record in dlq:
        headers = dict(record.headers)
        assert headers["source.topic"].decode() == topic
        assert int(headers["source.offset"]) >= 0
    wait_for(lambda: committed_everything(topic), message="offsets committed up to the end")
    assert metric(TEST_PORTS.consumer, "gostream_consumer_dlq_records_total") == 5
    assert metric(TEST_PORTS.consumer, "gostream_consumer_rows_written_total") == 300


def test_a_record_delivered_twice_is_stored_once(topic, services):
    symbol = unique("D") + "-USDT"
    batch = trades(symbol, 50)
    produce(topic, [(t.symbol.encode(), encode(t)) for t in batch + batch[10:20]])
    services.start("consumer", topic)
    wait_for(lambda: committed_everything(topic), message="offsets committed")
    assert stored(symbol) == as_rows(batch)


def test_restart_resumes_from_the_committed_offset(topic, services):
    symbol = unique("R") + "-USDT"
    first, second = trades(symbol, 100), trades(symbol, 100, first_id=101)
    produce(topic, [(t.symbol.encode(), encode(t)) for t in first])
    consumer = services.start("consumer", topic)
    wait_for(lambda: committed_everything(topic), message="first batch committed")
    assert consumer.stop() == 0  # SIGTERM: clean exit
    produce(topic, [(t.symbol.encode(), encode(t)) for t in second])
    services.start("consumer", topic)
    wait_for(lambda: len(stored(symbol)) == 200, message="second batch stored")
    wait_for(lambda: committed_everything(topic), message="second batch committed")
    assert stored(symbol) == as_rows(first + second)


def test_batch_records_land_trade_by_trade_and_a_bad_one_goes_whole_to_the_dlq(topic, services):
    symbol = unique("V") + "-USDT"
    good = trades(symbol, 300)
    spoiled = json.loads(encode_batch(good[100:200]))
    spoiled["trades"][42]["size"] = 0
    records = [(symbol.encode(), encode_batch(good[:100])), (symbol.encode(), json.dumps(spoiled).encode()),
               (symbol.encode(), encode_batch(good[200:])), (symbol.encode(), encode(good[150]))]  # v1 still read
    produce(topic, records)

    services.start("consumer", topic)
    expected = good[:100] + [good[150]] + good[200:]
    wait_for(lambda: len(stored(symbol)) == len(expected), message="the good batches and the v1 record in QuestDB")
    assert stored(symbol) == as_rows(expected)
    [dead] = wait_for(lambda: read_topic(f"{topic}.dlq") or None, message="the spoiled batch in the DLQ")
    assert dead.value == records[1][1]
    headers = dict(dead.headers)
    assert headers["error.reason"] == b"bad-size" and b"trade 42 of 100" in headers["error.detail"]

"""A dead letter is acknowledged by Kafka before its record's offset is committed.

Against the session's real Kafka broker and QuestDB: the checkpoint of a batch whose
dead letter the DLQ topic refuses (a record larger than the topic takes) must rewind
and commit nothing; with a DLQ topic that takes it, the batch is committed."""

import threading

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from gostream.common.schema import ensure_schema
from gostream.common.trade import RecordError, Trade, encode
from gostream.consumer.ingest import DeadLetterError, DeadLetters, Ingest
from gostream.consumer.settings import ConsumerSettings
from gostream.consumer.sink import QuestDBSink, sender_conf
from tests.conftest import TEST_PORTS, produce, read_topic, unique, wait_for

BOOTSTRAP = f"127.0.0.1:{TEST_PORTS.kafka}"
# Not a trade, so a dead letter; and larger than the small DLQ topic takes.
BAD_VALUE = b"not a trade " * 500


def create_topic(name: str, **config: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        admin.create_topics([NewTopic(name, 1, 1, topic_configs=config)])
    finally:
        admin.close()
    wait_for(lambda: name in read_topics(), message=f"topic {name} listed")


def read_topics() -> set[str]:
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    try:
        return consumer.topics()
    finally:
        consumer.close()


@pytest.fixture
def parts(kafka, questdb):
    """A consumer group member, a QuestDB sink and a DLQ producer, all real; closed after."""
    # The consumer's own schema first: a row written before it would make ILP create
    # `trades` with inferred columns and no DEDUP, for every later test of the session.
    ensure_schema(f"http://127.0.0.1:{TEST_PORTS.questdb_http}")
    made = []

    def make(topic: str, dlq_topic: str) -> tuple[Ingest, KafkaConsumer]:
        consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=f"{topic}-group", enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        consumer.assign([TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))])
        producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, client_id="test-dlq")
        sink = QuestDBSink(sender_conf("127.0.0.1", TEST_PORTS.questdb_http, 5.0))
        made.extend([consumer, producer, sink])
        settings = ConsumerSettings(kafka_bootstrap_servers=BOOTSTRAP, kafka_topic=topic, kafka_dlq_topic=dlq_topic,
                                    kafka_group_id=f"{topic}-group")
        return Ingest(settings, consumer, sink, DeadLetters(producer, dlq_topic), threading.Event()), consumer

    yield make
    for part in reversed(made):
        part.close()


def read_everything(ingest: Ingest, consumer: KafkaConsumer, topic: str) -> None:
    """Poll (which sends the dead letters) until every record of ``topic`` was read."""
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    end = consumer.end_offsets(partitions)

    def caught_up() -> bool:
        ingest._poll_once()
        return all(consumer.position(tp) >= end[tp] for tp in partitions)

    wait_for(caught_up, message=f"{topic} read to its end")


def committed(consumer: KafkaConsumer, topic: str) -> dict[int, int | None]:
    return {tp.partition: consumer.committed(tp) for tp in sorted(consumer.assignment(), key=lambda tp: tp.partition)
            if tp.topic == topic}


def good_trade(symbol: str) -> Trade:
    return Trade(symbol, 1, 100.0, 0.5, "buy", 1_700_000_000_000, 1_700_000_000_000_100)


def test_a_dead_letter_the_dlq_refuses_is_not_committed(topic, parts):
    tiny_dlq = unique("tiny-dlq-")
    create_topic(tiny_dlq, **{"max.message.bytes": "1024"})
    symbol = unique("L") + "-USDT"
    produce(topic, [(symbol.encode(), encode(good_trade(symbol))), (b"x", BAD_VALUE)])
    ingest, consumer = parts(topic, tiny_dlq)
    read_everything(ingest, consumer, topic)
    assert ingest.dead_letters.pending == 1

    assert ingest.checkpoint(wait_for_commit=True) is False
    assert set(committed(consumer, topic).values()) == {None}  # nothing committed
    assert any("DeadLetterError" in problem for problem in ingest.problems())
    assert read_topic(tiny_dlq) == []
    # Rewound: the bad record is read (and its letter sent) again, and refused again.
    read_everything(ingest, consumer, topic)
    assert ingest.dead_letters.pending == 1
    assert ingest.checkpoint(wait_for_commit=True) is False
    assert set(committed(consumer, topic).values()) == {None}


def test_a_dead_letter_the_dlq_acknowledged_is_committed(topic, parts):
    symbol = unique("L") + "-USDT"
    produce(topic, [(symbol.encode(), encode(good_trade(symbol))), (b"x", BAD_VALUE)])
    ingest, consumer = parts(topic, f"{topic}.dlq")
    read_everything(ingest, consumer, topic)

    assert ingest.checkpoint(wait_for_commit=True) is True
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    end = consumer.end_offsets(partitions)
    assert {p: offset or 0 for p, offset in committed(consumer, topic).items()} == {
        tp.partition: end[tp] for tp in partitions}
    assert sum(end.values()) == 2
    [letter] = read_topic(f"{topic}.dlq")
    assert letter.value == BAD_VALUE and dict(letter.headers)["error.reason"] == b"not-json"


def test_flush_raises_when_a_letter_failed(kafka):
    """DeadLetters on its own: kafka-python's flush() returns quietly after a failed send;
    ours raises, and a later flush with nothing new sent does not."""
    tiny_dlq = unique("tiny-dlq-")
    create_topic(tiny_dlq, **{"max.message.bytes": "1024"})
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, client_id="test-dlq")
    try:
        letters = DeadLetters(producer, tiny_dlq)

        class Record:  # the fields of a ConsumerRecord a letter copies
            topic, partition, offset, key, value = "trades", 0, 7, b"k", b"small"

        letters.send(Record, RecordError("not-json", "\ud800: a lone surrogate in the detail"))
        letters.flush(timeout_s=30)
        [letter] = read_topic(tiny_dlq)
        assert letter.value == b"small" and dict(letter.headers)["source.offset"] == b"7"
        assert dict(letter.headers)["error.detail"] == b"\\ud800: a lone surrogate in the detail"

        Record.value = BAD_VALUE
        letters.send(Record, RecordError("not-json", "x"))
        assert letters.pending == 1
        with pytest.raises(DeadLetterError, match="1 of 1 dead letters not acknowledged"):
            letters.flush(timeout_s=30)
        assert letters.pending == 0
        letters.flush(timeout_s=30)  # nothing sent since: nothing to fail
        assert len(read_topic(tiny_dlq)) == 1
    finally:
        producer.close()

"""The stall watch against a real Kafka: a consumer that holds partitions with records
waiting and reads none of them is noticed; one that reads, or has nothing to read, is not."""

import threading
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from gostream.consumer.ingest import Ingest, Stalled, StallWatch
from gostream.consumer.settings import ConsumerSettings
from tests.conftest import TEST_PORTS, produce


@pytest.fixture
def consumer(topic):
    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{TEST_PORTS.kafka}", enable_auto_commit=False,
                             fetch_max_wait_ms=50)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    yield consumer
    consumer.close()


def watch_for(consumer, watch: StallWatch, seconds: float) -> float:
    """Poll (reading what comes, nothing when the partitions are paused) for ``seconds``;
    the longest stall the watch reported."""
    longest = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=100)
        longest = max(longest, watch.stalled_for(consumer))
    return longest


def test_records_waiting_on_paused_partitions_are_a_stall(topic, consumer):
    produce(topic, [(b"k", b"%d" % i) for i in range(5)])
    consumer.pause(*consumer.assignment())  # holds its partitions, fetches nothing
    watch = StallWatch(timeout_s=1.0, every_s=0.2)
    assert watch_for(consumer, watch, 3.0) >= 1.0


def test_a_reading_consumer_is_not_stalled(topic, consumer):
    watch = StallWatch(timeout_s=1.0, every_s=0.2)
    feeding = threading.Thread(target=lambda: [produce(topic, [(b"k", b"%d" % i)]) or time.sleep(0.1)
                                               for i in range(25)])
    feeding.start()
    longest = watch_for(consumer, watch, 3.0)
    feeding.join()
    assert longest < 1.0


def test_a_caught_up_consumer_is_not_stalled(topic, consumer):
    produce(topic, [(b"k", b"x")])
    watch = StallWatch(timeout_s=1.0, every_s=0.2)
    watch_for(consumer, watch, 1.0)  # reads the record
    assert watch_for(consumer, watch, 2.0) == 0.0


def test_the_ingest_loop_reports_then_gives_up_on_a_stall(topic, consumer):
    produce(topic, [(b"k", b"x")])
    consumer.pause(*consumer.assignment())
    ingest = Ingest(ConsumerSettings(), consumer, sink=None, dead_letters=None, stopping=threading.Event(),
                    stall_watch=StallWatch(timeout_s=1.5, every_s=0.2))
    reported = []
    with pytest.raises(Stalled, match="none read for"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
            ingest._check_stall()
            reported += [p for p in ingest.problems() if "none read" in p]
    assert reported, "the stall showed in /readyz before the consumer gave up"

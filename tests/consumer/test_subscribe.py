"""Joining the group: a fresh consumer is assigned its partitions once and goes on reading."""

import threading
import time

from kafka import ConsumerRebalanceListener, KafkaConsumer

from gostream.consumer.__main__ import subscribe
from tests.conftest import TEST_PORTS, produce, unique


class Rebalances(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.assigned: list[set] = []
        self.revoked: list[set] = []

    def on_partitions_assigned(self, assigned) -> None:
        self.assigned.append(set(assigned))

    def on_partitions_revoked(self, revoked) -> None:
        if revoked:
            self.revoked.append(set(revoked))


def poll_for(consumer: KafkaConsumer, seconds: float, until: int | None = None) -> int:
    """Records read in polls of 2 ms (as the consumer makes while a batch is open) over
    ``seconds``, or until ``until`` were read."""
    read = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (until is None or read < until):
        read += sum(len(records) for records in consumer.poll(timeout_ms=2).values())
    return read


def group_joined_once_before(topic: str) -> None:
    """The first join of a test session is slow (the broker creates its offsets topic and
    warms up), long enough to hide the race below: let another group join first."""
    probe = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{TEST_PORTS.kafka}", group_id=unique("probe-"),
                          enable_auto_commit=False)
    try:
        probe.subscribe([topic])
        deadline = time.monotonic() + 30
        while not probe.assignment() and time.monotonic() < deadline:
            probe.poll(timeout_ms=100)
    finally:
        probe.close()


def test_a_fresh_consumer_joins_once_and_goes_on_reading(topic):
    # Joined from an empty view of the topic, the consumer soon rejoins; with short polls
    # that rejoin ends between two of them, kafka-python 3.0.12 drops its result, and the
    # consumer holds nothing from then on.
    group_joined_once_before(topic)
    produce(topic, [(b"k%d" % i, b"%d" % i) for i in range(10)])
    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{TEST_PORTS.kafka}", group_id=unique("join-"),
                             enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=50)
    rebalances = Rebalances()
    try:
        subscribe(consumer, topic, rebalances, threading.Event())
        first = poll_for(consumer, 3.0)  # long enough for a rejoin after the first join
        produce(topic, [(b"k%d" % i, b"%d" % i) for i in range(10, 20)])
        later = poll_for(consumer, 10.0, until=10)
        assigned, revoked = list(rebalances.assigned), list(rebalances.revoked)  # closing revokes
    finally:
        consumer.close(autocommit=False)
    assert (first, later) == (10, 10)
    assert revoked == []
    assert len(assigned) == 1 and len(assigned[0]) == 3

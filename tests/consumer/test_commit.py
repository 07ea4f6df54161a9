"""A flush makes rows visible; a commit bounds what a restart reads again. The consumer
commits flushed offsets only, and not after every batch (see gostream.consumer.ingest)."""

import time

from kafka import TopicPartition

from gostream.common.trade import encode
from tests.conftest import produce, sql, unique, wait_for
from tests.consumer.test_dead_letters import committed, parts, read_everything  # noqa: F401 (parts: a fixture)
from tests.consumer.test_ingest import trades


def test_only_what_was_flushed_is_committed_and_not_at_every_flush(topic, parts):  # noqa: F811
    symbol = unique("K") + "-USDT"
    batch = trades(symbol, 5)
    produce(topic, [(symbol.encode(), encode(t)) for t in batch[:3]])
    ingest, consumer = parts(topic, f"{topic}.dlq")
    read_everything(ingest, consumer, topic)

    assert ingest.checkpoint(wait_for_commit=False) is True
    wait_for(lambda: sql(f"select count() n from trades where symbol = '{symbol}'")[0]["n"] == 3,
             message="the flushed trades visible in QuestDB")
    assert set(committed(consumer, topic).values()) == {None}  # visible, not committed yet

    # Two more read into the open batch, not flushed: a commit now must not cover them.
    produce(topic, [(symbol.encode(), encode(t)) for t in batch[3:]])
    read_everything(ingest, consumer, topic)
    (partition,) = {tp.partition for tp in consumer.assignment()
                    if consumer.position(tp) > 0}
    ingest.commit(wait=True)
    assert committed(consumer, topic)[partition] == 3

    assert ingest.checkpoint(wait_for_commit=True) is True
    assert committed(consumer, topic)[partition] == 5
    assert consumer.end_offsets([TopicPartition(topic, partition)])[TopicPartition(topic, partition)] == 5


def test_a_young_batch_waits_in_its_polls_rather_than_spinning(topic, parts):  # noqa: F811
    """Until a batch is due, each poll waits for what is left of the flush interval: a poll
    of 0 ms then is a busy loop (it was: the wait was truncated to whole milliseconds)."""
    symbol = unique("W") + "-USDT"
    ingest, consumer = parts(topic, f"{topic}.dlq")
    real_poll, spins, polls = consumer.poll, [], []

    def poll(timeout_ms=0, **kwargs):
        age = time.monotonic() - ingest._batch_started
        if ingest._unflushed and age < ingest.settings.flush_interval_s:
            polls.append(timeout_ms)
            if timeout_ms == 0:
                spins.append(age)
        return real_poll(timeout_ms=timeout_ms, **kwargs)

    consumer.poll = poll
    for i, trade in enumerate(trades(symbol, 20)):
        produce(topic, [(symbol.encode(), encode(trade))])
        wait_for(lambda: ingest._poll_once() or ingest._unflushed, message=f"trade {i} read")
        while not ingest._due():
            ingest._poll_once()
        assert ingest.checkpoint(wait_for_commit=False) is True
    assert len(polls) >= 20  # every batch waited in polls before it was due ...
    assert spins == []  # ... and none of them returned at once

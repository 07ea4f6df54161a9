"""Where the last run stopped: the newest trade id per symbol already in the topic.

Read at start-up so the first trade after a restart (or a crash that lost what the
Kafka client still held) reveals the gap, which is then backfilled. Records are keyed
by symbol, so a symbol's newest trades are at the end of one partition.
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from gostream.common.trade import RecordError, decode


def last_trade_ids(bootstrap_servers: str, topic: str, symbols: tuple[str, ...], scan: int,
                   timeout_s: float = 30.0) -> dict[str, int]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers.split(","),
        enable_auto_commit=False,
        client_id="gostream-producer-resume",
        bootstrap_timeout_ms=5000,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return {}
        consumer.assign(partitions)
        end = consumer.end_offsets(partitions)
        start = consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(start[tp], end[tp] - scan))
        wanted, found = set(symbols), {}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading the tail of {topic} took over {timeout_s} s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    try:
                        trades = decode(record.value)
                    except RecordError:
                        continue
                    for trade in trades:
                        if trade.symbol in wanted and trade.trade_id > found.get(trade.symbol, 0):
                            found[trade.symbol] = trade.trade_id
        return found
    finally:
        consumer.close()

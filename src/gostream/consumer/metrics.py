"""The consumer's Prometheus metrics (prefix gostream_consumer_)."""

import time

from prometheus_client import Counter, Gauge, Histogram

from gostream.common.health import BatchHistogram

RECORDS_CONSUMED = Counter("gostream_consumer_records_consumed_total", "Kafka records read")
ROWS_WRITTEN = Counter("gostream_consumer_rows_written_total", "Rows QuestDB acknowledged")
DLQ_RECORDS = Counter("gostream_consumer_dlq_records_total", "Records sent to the dead-letter topic", ["reason"])
FLUSH_ERRORS = Counter("gostream_consumer_flush_errors_total", "QuestDB flushes that failed (batch rewound)")
COMMIT_ERRORS = Counter("gostream_consumer_commit_errors_total", "Kafka offset commits that failed")
PARTITIONS_REVOKED = Counter(
    "gostream_consumer_partitions_revoked_total", "Partitions taken away by a group rebalance (each one a pause)"
)
BATCH_ROWS = Histogram(
    "gostream_consumer_batch_rows", "Rows per QuestDB transaction", buckets=(1, 10, 50, 100, 500, 1000, 5000, 20000)
)
FLUSH_SECONDS = Histogram(
    "gostream_consumer_flush_duration_seconds",
    "QuestDB flush time per batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
STORED_LATENCY = BatchHistogram(
    "gostream_consumer_exchange_to_stored_seconds",
    "Exchange time of a trade to QuestDB acknowledging it",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ASSIGNED = Gauge("gostream_consumer_assigned_partitions", "Partitions of the topic this consumer reads now")
HEALTHY = Gauge("gostream_consumer_questdb_healthy", "1 while the last QuestDB flush succeeded")

LAG = Gauge(
    "gostream_consumer_lag_records",
    "Records in an assigned partition not yet read: high watermark minus position",
    ["topic", "partition"],
)
_lag_updated = [0.0]
_lag_labels: set[tuple[str, str]] = set()


def positions(consumer) -> dict:
    """Each assigned partition's next offset to read (None until it has one). Once a poll
    has run, ``position()`` answers from the consumer's own state; timeout 0 keeps a
    partition still waiting for its offset from blocking the poll loop."""
    found = {}
    for tp in consumer.assignment():
        try:
            found[tp] = consumer.position(tp, timeout_ms=0)
        except Exception:  # unassigned meanwhile (a rebalance), or no offset yet
            found[tp] = None
    return found


def update_lag(consumer, every_s: float = 1.0) -> None:
    """Refresh gostream_consumer_lag_records from the consumer's own state.

    Call from the thread that polls (kafka-python's consumer is not thread-safe), e.g.
    after each ``poll``; it does no network I/O and runs at most once per ``every_s``.
    The high watermark comes with every fetch response; a partition none has arrived
    for yet is left out. Partitions no longer assigned are removed.
    """
    now = time.monotonic()
    if now - _lag_updated[0] < every_s:
        return
    _lag_updated[0] = now
    seen = set()
    try:
        for tp, position in positions(consumer).items():
            highwater = consumer.highwater(tp)
            if highwater is None or position is None:
                continue
            labels = (tp.topic, str(tp.partition))
            LAG.labels(*labels).set(max(0, highwater - position))
            seen.add(labels)
    except Exception:  # never let a metric break the ingest loop
        return
    for labels in _lag_labels - seen:
        try:
            LAG.remove(*labels)
        except KeyError:
            pass
    _lag_labels.clear()
    _lag_labels.update(seen)

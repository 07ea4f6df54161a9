"""The consumer's Prometheus metrics (prefix gostream_consumer_)."""

from prometheus_client import Counter, Gauge, Histogram

RECORDS_CONSUMED = Counter("gostream_consumer_records_consumed_total", "Kafka records read")
ROWS_WRITTEN = Counter("gostream_consumer_rows_written_total", "Rows QuestDB acknowledged")
DLQ_RECORDS = Counter("gostream_consumer_dlq_records_total", "Records sent to the dead-letter topic", ["reason"])
FLUSH_ERRORS = Counter("gostream_consumer_flush_errors_total", "QuestDB flushes that failed (batch rewound)")
COMMIT_ERRORS = Counter("gostream_consumer_commit_errors_total", "Kafka offset commits that failed")
BATCH_ROWS = Histogram(
    "gostream_consumer_batch_rows", "Rows per QuestDB transaction", buckets=(1, 10, 50, 100, 500, 1000, 5000, 20000)
)
FLUSH_SECONDS = Histogram(
    "gostream_consumer_flush_duration_seconds",
    "QuestDB flush time per batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
STORED_LATENCY = Histogram(
    "gostream_consumer_exchange_to_stored_seconds",
    "Exchange time of a trade to QuestDB acknowledging it",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
HEALTHY = Gauge("gostream_consumer_questdb_healthy", "1 while the last QuestDB flush succeeded")

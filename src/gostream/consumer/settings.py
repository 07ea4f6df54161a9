from __future__ import annotations

from dataclasses import dataclass

from gostream.common.schema import ttl_clause
from gostream.common.settings import KafkaSettings, QuestDBSettings, SettingsError, require_positive
from gostream.consumer.storage import volume_bytes


@dataclass(frozen=True)
class ConsumerSettings(KafkaSettings, QuestDBSettings):
    kafka_group_id: str = "gostream-consumer"
    # A consumer that died without leaving the group holds its partitions this long;
    # kafka-python's 45 s default would stall ingestion for that long after a crash; much
    # shorter and a consumer starved of CPU for a moment is expelled from the group.
    kafka_session_timeout_ms: int = 20_000
    # How long the broker holds a fetch that finds nothing new. kafka-python leaves a
    # partition out of the next fetch while its last records are being handed over, and that
    # fetch, holding only quiet partitions, then waits this long (BENCHMARKS.md, P3): 500,
    # the client's default, put 1-2 % of trades half a second late.
    kafka_fetch_max_wait_ms: int = 50
    # ... and how much it waits for before answering early. At 1 byte every record the
    # producer sends is a fetch of its own (hundreds a second, each a round trip through
    # kafka-python's network thread and, for the few rows it brings, a QuestDB
    # transaction); 64 KiB makes a fetch every fetch_max_wait_ms or ~600 trades, whichever
    # is first: 2.2x less consumer CPU per trade at 10,000/s and fewer, larger QuestDB
    # transactions, for at most fetch_max_wait_ms more before a trade is visible
    # (BENCHMARKS.md, CPU per trade). 1 answers at once.
    kafka_fetch_min_bytes: int = 65536
    # A consumer holding partitions with records waiting that reads none for this long
    # exits (and is restarted): see ingest.StallWatch.
    stall_timeout_s: float = 60.0
    health_port: int = 9102
    log_level: str = "INFO"
    # A batch is flushed to QuestDB (one transaction) and committed to Kafka when it
    # holds this many trades (a poll reads at most this many records), or when its oldest
    # record has waited this long. Short, so a flush adds milliseconds to what the fetch
    # already waited (kafka_fetch_min_bytes); under load a batch fills up first anyway.
    batch_max_records: int = 5000
    flush_interval_s: float = 0.01
    # How long the questdb client itself retries a failed flush before we rewind.
    questdb_retry_timeout_s: float = 5.0
    retry_max_delay_s: float = 30.0
    # Seconds the shutdown after SIGTERM may take (the chart passes what the pod's grace
    # period leaves): the batch in flight ends (its flush retries for at most
    # questdb_retry_timeout_s), then the Kafka clients close within what is left.
    shutdown_timeout_s: float = 20.0
    # Retention, set on the tables at start-up (existing ones too): raw trades older than
    # TRADES_TTL and 1m candles older than CANDLES_TTL are dropped a day's partition at a
    # time (90d, 12w, 6M, 2y; 0 keeps everything; empty leaves what the table has).
    trades_ttl: str = ""
    candles_ttl: str = ""
    # QuestDB's disk use is read from its table_storage() this often (consumer.storage).
    questdb_storage_poll_s: float = 60.0
    # Size of QuestDB's data volume (10Gi, 500G or bytes) for the disk alerts; empty: not known.
    questdb_volume_size: str = ""

    def check(self) -> None:
        super().check()
        for name in ("trades_ttl", "candles_ttl"):
            if getattr(self, name):
                try:
                    ttl_clause(getattr(self, name))
                except ValueError as exc:
                    raise SettingsError(f"{name.upper()}: {exc}") from None
        try:
            volume_bytes(self.questdb_volume_size)
        except ValueError as exc:
            raise SettingsError(f"QUESTDB_VOLUME_SIZE: {exc}") from None
        require_positive(self, "kafka_session_timeout_ms", "kafka_fetch_max_wait_ms", "kafka_fetch_min_bytes", "stall_timeout_s", "batch_max_records", "flush_interval_s", "retry_max_delay_s", "shutdown_timeout_s", "questdb_storage_poll_s")

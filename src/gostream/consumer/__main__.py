"""python -m gostream.consumer: settings -> run loop -> health/metrics."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from gostream.common.health import HealthServer
from gostream.common.logs import setup_logging
from gostream.common.settings import SettingsError, kafka_client_config, load
from gostream.consumer.ingest import DeadLetters, Ingest, Stalled
from gostream.common.schema import ensure_schema
from gostream.consumer.settings import ConsumerSettings
from gostream.consumer.sink import QuestDBSink, sender_conf
from gostream.consumer.storage import StorageWatch, volume_bytes

log = logging.getLogger("gostream.consumer")


def _retry(what: str, action, stopping: threading.Event, starting: list[str] | None = None):
    """Start-up dependencies may come up after us: retry with backoff until they do. With
    ``starting`` (what /readyz says), the last error is added to it."""
    delay = 1.0
    doing = starting[0] if starting else ""
    while not stopping.is_set():
        try:
            return action()
        except Exception as exc:
            if starting:
                starting[0] = f"{doing} (last error: {type(exc).__name__}: {str(exc)[:200]})"
            log.warning(f"{what} not ready, retrying", extra={"error": str(exc)[:300], "retry_in_s": delay})
            stopping.wait(delay)
            delay = min(delay * 2, 30.0)
    raise SystemExit(0)


def subscribe(consumer: KafkaConsumer, topic: str, listener, stopping: threading.Event) -> None:
    """Subscribe, then wait until the broker lists the topic, before the first poll.

    kafka-python 3.0.12 notes the subscribed topics' partitions only when a metadata answer
    arrives after subscribe(). A first join ahead of that answer assigns from an empty
    view, and the rejoin that follows can end while no poll waits for it: its result is
    dropped, and the consumer holds nothing, sends no heartbeats and is expelled. topics()
    asks the broker on every call, and each answer updates that view.
    """
    consumer.subscribe([topic], listener=listener)

    def listed() -> None:
        if topic not in consumer.topics():
            raise LookupError(f"topic {topic!r} does not exist (yet)")

    _retry("topic", listed, stopping)


def main() -> int:
    try:
        settings = load(ConsumerSettings)
    except SettingsError as exc:
        print(f"gostream.consumer: bad setting: {exc}", file=sys.stderr)
        return 2
    setup_logging("consumer", settings.log_level)

    ingest: Ingest | None = None
    starting = ["starting"]
    stopping = threading.Event()
    deadline = [float("inf")]  # SIGTERM time + shutdown_timeout_s

    def problems() -> list[str]:
        return ingest.problems() if ingest else [f"consumer: {starting[0]}"]

    def left() -> float:
        return max(0.1, min(10.0, deadline[0] - time.monotonic()))

    def on_signal(signum, _frame):
        deadline[0] = min(deadline[0], time.monotonic() + settings.shutdown_timeout_s)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    health = HealthServer(settings.health_port, problems).start()

    questdb_url = settings.questdb_http_url
    starting[0] = "creating the QuestDB schema"
    _retry("questdb", lambda: ensure_schema(questdb_url, settings.trades_ttl or None, settings.candles_ttl or None),
           stopping)
    StorageWatch(questdb_url, volume_bytes(settings.questdb_volume_size), settings.questdb_storage_poll_s,
                 stopping).start()
    starting[0] = "connecting to QuestDB"
    sink = _retry(
        "questdb",
        lambda: QuestDBSink(
            sender_conf(settings.questdb_host, settings.questdb_http_port, settings.questdb_retry_timeout_s,
                        *((settings.questdb_user, settings.questdb_password) if settings.questdb_http_auth else ()))
        ),
        stopping,
    )
    starting[0] = "connecting to Kafka"
    kafka = kafka_client_config(settings)
    dlq_producer = _retry(
        "kafka", lambda: KafkaProducer(**kafka, client_id="gostream-consumer-dlq", bootstrap_timeout_ms=5000),
        stopping, starting,
    )
    consumer = _retry(
        "kafka",
        lambda: KafkaConsumer(
            **kafka,
            group_id=settings.kafka_group_id,
            client_id="gostream-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_max_records,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(1000, settings.kafka_session_timeout_ms // 4),
            # A partition added later is picked up within this time.
            metadata_max_age_ms=30_000,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            fetch_min_bytes=settings.kafka_fetch_min_bytes,
        ),
        stopping, starting,
    )
    ingest = Ingest(settings, consumer, sink, DeadLetters(dlq_producer, settings.kafka_dlq_topic), stopping)
    starting[0] = f"waiting for topic {settings.kafka_topic}"
    subscribe(consumer, settings.kafka_topic, ingest, stopping)
    log.info("consumer started", extra={"topic": settings.kafka_topic, "group": settings.kafka_group_id})
    try:
        ingest.run()
    except (KafkaError, Stalled) as exc:
        log.error("kafka failed", extra={"error": str(exc)})
        return 1
    finally:
        consumer.close(autocommit=False, timeout_ms=int(left() * 1000))
        dlq_producer.close(timeout=left())
        sink.close()
        health.stop()
        log.info("consumer stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

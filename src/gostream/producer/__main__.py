"""python -m gostream.producer: settings -> run loop -> health/metrics."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

import uvloop
from kafka.errors import KafkaError

from gostream.common.health import HealthServer
from gostream.common.logs import setup_logging
from gostream.common.settings import SettingsError, kafka_client_config, load
from gostream.common.schema import SchemaError, ensure_schema
from gostream.producer import history
from gostream.producer.audit import Auditor, Policy, Store
from gostream.producer.feed import Feed
from gostream.producer.instruments import Registry
from gostream.producer.publisher import Publisher
from gostream.producer.settings import ProducerSettings

log = logging.getLogger("gostream.producer")


async def _connect_publisher(settings: ProducerSettings, on_lost, status: list[str]) -> Publisher:
    """Retry until Kafka takes the producer; ``status[0]`` says why not yet (for /readyz).
    A refused password or certificate is in kafka-python's own log line just before."""
    delay = 1.0
    while True:
        try:
            publisher = await asyncio.to_thread(
                Publisher, kafka_client_config(settings), settings.kafka_topic, settings.buffer_max_trades, on_lost,
                settings.publish_batch_max,
            )
            return publisher.start()
        except KafkaError as exc:
            status[0] = f"kafka: not connected ({type(exc).__name__}: {exc})"
            log.warning("kafka not reachable, retrying", extra={"error": str(exc), "retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _prepare_store(store: Store, attempts: int = 4) -> bool:
    """The tables may not be there yet (the consumer makes them too): the same idempotent
    DDL. Not fatal: without the store the feed still flows, and the audit retries."""
    for attempt in range(1, attempts + 1):
        try:
            await asyncio.to_thread(ensure_schema, store.base_url)
            return True
        except (OSError, SchemaError) as exc:
            log.warning("QuestDB not answering", extra={"error": str(exc)[:300], "attempt": attempt})
            if attempt < attempts:
                await asyncio.sleep(2 ** (attempt - 1))
    log.error("starting without QuestDB: no resume from the store and no history now; the audit finds the holes later")
    return False


def _adopter(store: Store, settings: ProducerSettings, feed_ref: list):
    """What happens to symbols before they are first subscribed: resume from the newest id
    in the store (so the first trade reveals what was missed, however quiet the symbol and
    however long the producer was down), then queue their history."""
    async def adopt(symbols: set[str]) -> None:
        feed = feed_ref[0]
        try:
            ids = await asyncio.to_thread(store.last_ids, sorted(symbols))
            for symbol, last_id in ids.items():
                feed.continuity.last_id.setdefault(symbol, last_id)
            if ids:
                log.info("resuming after the trades already stored", extra={"last_ids": dict(list(ids.items())[:50])})
            await asyncio.to_thread(history.start, store, feed.history, tuple(sorted(symbols)),
                                    settings.history_window_s)
        except (OSError, SchemaError) as exc:
            log.error("no resume or history for these symbols: QuestDB did not answer (the audit finds the holes)",
                      extra={"error": str(exc)[:300], "symbols": sorted(symbols)[:50]})
    return adopt


async def run(settings: ProducerSettings) -> None:
    publisher: Publisher | None = None
    store = Store(settings.questdb_http_url)
    feed_ref: list = []
    kafka_status = ["kafka: connecting"]
    feed = Feed(settings, on_trade=lambda trade: publisher.offer(trade), adopt=_adopter(store, settings, feed_ref),
                registry=Registry(store.base_url))
    feed_ref.append(feed)
    auditor = Auditor(
        store, lambda: tuple(sorted(feed.symbols)),
        Policy(settle_s=settings.audit_settle_s, retry_min_s=settings.hole_retry_min_s,
               retry_max_s=settings.hole_retry_max_s, max_attempts=settings.hole_max_attempts,
               max_ids=settings.hole_max_ids, gone_min_age_s=settings.hole_gone_min_age_s),
        submit=feed.history.submit, pending=feed.history.pending, interval_s=settings.audit_interval_s,
    )

    def problems() -> list[str]:
        return (publisher.problems() if publisher else kafka_status) + feed.problems() + auditor.problems()

    health = HealthServer(settings.health_port, problems).start()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    try:
        publisher = await _connect_publisher(settings, on_lost=feed.lost.add, status=kafka_status)
        await _prepare_store(store)
        auditor.start()
        log.info("producer started", extra={"symbols": settings.symbols, "channel": settings.okx_channel})
        recovery = asyncio.create_task(feed.recover_lost(lambda: not publisher.problems()))
        try:
            await feed.run()
        finally:
            recovery.cancel()
            await feed.close_connections()
    except asyncio.CancelledError:
        log.info("shutting down: flushing kafka")
    finally:
        deadline = time.monotonic() + settings.shutdown_timeout_s

        def left(share: float = 1.0) -> float:
            return max(0.1, (deadline - time.monotonic()) * share)

        await asyncio.to_thread(auditor.stop, left(0.25))
        await asyncio.to_thread(feed.close, left(0.25))
        if publisher is not None:
            await asyncio.to_thread(publisher.close, left())
        health.stop()
        log.info("producer stopped", extra={"received": feed.received})


def main() -> int:
    try:
        settings = load(ProducerSettings)
    except SettingsError as exc:
        print(f"gostream.producer: bad setting: {exc}", file=sys.stderr)
        return 2
    setup_logging("producer", settings.log_level)
    # uvloop: libuv's loop in C; every WebSocket push passes through the loop, and it took
    # ~5 µs of CPU per trade off the asyncio loop's at 10,000 pushes/s (BENCHMARKS.md).
    uvloop.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

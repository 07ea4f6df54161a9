"""python -m gostream.producer: settings -> run loop -> health/metrics."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from kafka.errors import KafkaError

from gostream.common.health import HealthServer
from gostream.common.logs import setup_logging
from gostream.common.settings import SettingsError, load
from gostream.producer.feed import Feed
from gostream.producer.publisher import Publisher
from gostream.producer.resume import last_trade_ids
from gostream.producer.settings import ProducerSettings

log = logging.getLogger("gostream.producer")


async def _connect_publisher(settings: ProducerSettings, on_lost) -> Publisher:
    delay = 1.0
    while True:
        try:
            publisher = await asyncio.to_thread(
                Publisher, settings.kafka_bootstrap_servers, settings.kafka_topic, settings.buffer_max_trades, on_lost,
                settings.publish_batch_max,
            )
            return publisher.start()
        except KafkaError as exc:
            log.warning("kafka not reachable, retrying", extra={"error": str(exc), "retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _resume(settings: ProducerSettings, feed: Feed) -> None:
    """Start from the newest trade ids already in Kafka, so what was missed is backfilled."""
    try:
        ids = await asyncio.to_thread(
            last_trade_ids, settings.kafka_bootstrap_servers, settings.kafka_topic, settings.symbols,
            settings.resume_scan_records,
        )
    except Exception as exc:  # not fatal: without it the first gap after a restart goes unseen
        log.error("could not read the last trade ids from Kafka", extra={"error": str(exc)})
        return
    feed.continuity.last_id.update(ids)
    if ids:
        log.info("resuming after the trades already in Kafka", extra={"last_ids": ids})


async def run(settings: ProducerSettings) -> None:
    publisher: Publisher | None = None
    feed = Feed(settings, on_trade=lambda trade: publisher.offer(trade))

    def problems() -> list[str]:
        return (publisher.problems() if publisher else ["kafka: connecting"]) + feed.problems()

    health = HealthServer(settings.health_port, problems).start()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    try:
        publisher = await _connect_publisher(settings, on_lost=feed.lost.add)
        await _resume(settings, feed)
        log.info("producer started", extra={"symbols": settings.symbols, "channel": settings.okx_channel})
        recovery = asyncio.create_task(feed.recover_lost(lambda: not publisher.problems()))
        try:
            await feed.run()
        finally:
            recovery.cancel()
    except asyncio.CancelledError:
        log.info("shutting down: flushing kafka")
    finally:
        await asyncio.to_thread(feed.close)
        if publisher is not None:
            await asyncio.to_thread(publisher.close, settings.shutdown_flush_timeout_s)
        health.stop()
        log.info("producer stopped", extra={"received": feed.received})


def main() -> int:
    try:
        settings = load(ProducerSettings)
    except SettingsError as exc:
        print(f"gostream.producer: bad setting: {exc}", file=sys.stderr)
        return 2
    setup_logging("producer", settings.log_level)
    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

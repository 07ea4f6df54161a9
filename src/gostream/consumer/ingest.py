"""The checkpoint loop: poll -> decode -> buffer -> flush to QuestDB -> commit Kafka.

Offsets are committed only after QuestDB acknowledged every row read before them, and
after the dead-letter producer acknowledged every bad record. If a flush fails, the
partitions are rewound to the first unflushed offset and the rows dropped: they will
be read again, and QuestDB's DEDUP makes the second write of any row that did land a
no-op. Memory stays bounded by one batch.

A flush makes rows visible; a commit only bounds what a restart reads again. So the offsets
of flushed batches are committed at most every COMMIT_INTERVAL_S, when the topic goes quiet,
before partitions are handed over and at shutdown, not after every 10 ms batch: a restart
re-reads at most that much, which DEDUP absorbs.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from gostream.common.health import kafka_connected
from gostream.common.trade import RecordError, decode
from gostream.consumer import metrics
from gostream.consumer.settings import ConsumerSettings
from gostream.consumer.sink import QuestDBSink

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.2
# A batch that is neither full nor caught up (e.g. a backlog of dead letters, which add no
# rows) is still written this often.
MAX_BATCH_AGE_S = 1.0
# Flushed offsets are committed at least this often while records keep coming.
COMMIT_INTERVAL_S = 1.0


class DeadLetterError(RuntimeError):
    """A dead letter the DLQ topic did not acknowledge: its record must not be committed."""


class DeadLetters:
    """Bad records, byte for byte, to the DLQ topic with the reason in headers.

    ``flush`` returns only once the broker acknowledged every letter sent since the last
    flush, and raises if any of them failed (kafka-python's own ``flush`` does not: it
    only waits until each send is done, acknowledged or not). The caller commits the
    records' offsets only after that."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic
        self._sent: list = []  # FutureRecordMetadata, or the exception send() raised

    @property
    def pending(self) -> int:
        return len(self._sent)

    def send(self, record, error: RecordError) -> None:
        headers = [
            ("error.reason", error.reason.encode(errors="backslashreplace")),
            ("error.detail", error.detail[:500].encode(errors="backslashreplace")),
            ("source.topic", record.topic.encode()),
            ("source.partition", str(record.partition).encode()),
            ("source.offset", str(record.offset).encode()),
        ]
        try:
            self._sent.append(self._producer.send(self.topic, key=record.key, value=record.value, headers=headers))
        except Exception as exc:  # refused before it left (too large, no metadata): fail the flush
            self._sent.append(exc)
        metrics.DLQ_RECORDS.labels(error.reason).inc()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every letter's acknowledgement; raise DeadLetterError if one failed."""
        if not self._sent:
            return
        sent, self._sent = self._sent, []
        deadline = time.monotonic() + timeout_s
        self._producer.flush(timeout=timeout_s)
        failed = []
        for future in sent:
            if isinstance(future, Exception):
                failed.append(future)
                continue
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                failed.append(exc)
        if failed:
            raise DeadLetterError(f"{len(failed)} of {len(sent)} dead letters not acknowledged by "
                                  f"{self.topic}: {type(failed[0]).__name__}: {str(failed[0])[:200]}")

    def discard(self) -> None:
        """Forget the letters of a batch that is being rewound (they are sent again when
        their records are read again)."""
        self._sent = []


class Stalled(RuntimeError):
    """The consumer holds partitions with records waiting but stopped reading them."""


class StallWatch:
    """Notices a consumer that holds partitions with records waiting and reads none of them.

    kafka-python 3.0.12 can drop the result of a rejoin that ends while no poll waits for
    it: the consumer then holds partitions it never fetches and is expelled from its group.
    Start-up no longer rejoins (see ``subscribe`` in ``__main__``); a rejoin later on (a
    partition count change) still can. Nothing inside the client reports it, so the end
    offsets are asked for directly (a ListOffsets round trip, every ``every_s``) and
    compared with the positions. The caller exits when it trips; Kubernetes or the
    supervisor start a fresh consumer.
    """

    def __init__(self, timeout_s: float, every_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self.every_s = every_s
        self._checked = 0.0
        self._positions: dict = {}
        self._progress = time.monotonic()
        self._stalled = 0.0

    def reset(self) -> None:
        """Not reading on purpose (backing off while QuestDB is down): start counting anew."""
        self._positions = {}
        self._progress = time.monotonic()
        self._stalled = 0.0

    def stalled_for(self, consumer: KafkaConsumer) -> float:
        """Seconds without progress while records wait (as of the last check); 0 when
        reading or when nothing waits."""
        now = time.monotonic()
        if now - self._checked >= self.every_s:
            self._checked = now
            self._stalled = self._check(consumer, now)
        return self._stalled

    def _check(self, consumer: KafkaConsumer, now: float) -> float:
        assigned = consumer.assignment()
        if not assigned:
            self.reset()
            return 0.0
        positions = metrics.positions(consumer)
        end = consumer.end_offsets(list(assigned), timeout_ms=max(1000, int(self.every_s * 1000)))
        waiting = any(end.get(tp, 0) > (positions[tp] or 0) for tp in assigned)
        if not waiting or positions != self._positions:
            self._positions = positions
            self._progress = now
            return 0.0
        return now - self._progress


def _count_commit_errors(offsets, response) -> None:
    if isinstance(response, Exception):
        metrics.COMMIT_ERRORS.inc()
        log.warning("offset commit failed", extra={"error": str(response)})


class Ingest(ConsumerRebalanceListener):
    def __init__(
        self,
        settings: ConsumerSettings,
        consumer: KafkaConsumer,
        sink: QuestDBSink,
        dead_letters: DeadLetters,
        stopping: threading.Event,
        stall_watch: StallWatch | None = None,
    ) -> None:
        self.settings = settings
        self.stall_watch = stall_watch or StallWatch(settings.stall_timeout_s)
        self.consumer = consumer
        self.sink = sink
        self.dead_letters = dead_letters
        self.stopping = stopping
        # First offset read since the last flush, per partition: where to rewind to.
        self._unflushed: dict[TopicPartition, int] = {}
        # Next offset to read, per partition: what a flush makes safe to commit ...
        self._read_upto: dict[TopicPartition, int] = {}
        # ... and what was flushed and not committed yet.
        self._to_commit: dict[TopicPartition, int] = {}
        self._committed_at = time.monotonic()
        self._batch_started = 0.0
        self._drained = True  # the last poll returned less than it could: the topic is read up
        self._failing_since = 0.0
        self._last_error = ""
        self._stalled_s = 0.0

    def problems(self) -> list[str]:
        found = []
        if not kafka_connected(self.consumer):
            found.append("kafka: not connected")
        if self._stalled_s:
            found.append(f"kafka: records waiting, none read for {self._stalled_s:.0f} s")
        if self._failing_since:
            found.append(f"questdb: writes failing for {time.monotonic() - self._failing_since:.0f} s ({self._last_error})")
        return found

    def run(self) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            read = self._poll_once()
            if not read or time.monotonic() - self._committed_at >= COMMIT_INTERVAL_S:
                self.commit(wait=False)
            if self._due():
                if self.checkpoint(wait_for_commit=False):
                    delay = 1.0
                else:
                    self.stopping.wait(delay)  # QuestDB is down: back off, don't spin
                    delay = min(delay * 2, self.settings.retry_max_delay_s)
                    self.stall_watch.reset()
            self._check_stall()
        self.checkpoint(wait_for_commit=True)

    def _check_stall(self) -> None:
        try:
            self._stalled_s = self.stall_watch.stalled_for(self.consumer)
        except Exception as exc:  # Kafka unreachable: "not connected" says so already
            log.debug("stall check failed", extra={"error": str(exc)})
            return
        if self._stalled_s >= self.stall_watch.timeout_s:
            raise Stalled(f"records waiting in {sorted(map(str, self.consumer.assignment()))}, "
                          f"none read for {self._stalled_s:.0f} s")

    def _poll_once(self) -> int:
        """Poll once and buffer what came; the number of records read."""
        # With a batch open, wait only as long as it may still wait; idle, a poll returns
        # as soon as a record arrives anyway, and the timeout only paces the stop check.
        wait_s = IDLE_POLL_S
        if self._unflushed:
            wait_s = max(0.0, self._batch_started + self.settings.flush_interval_s - time.monotonic())
        # Rounded up: truncated, the last millisecond before a flush was spent in polls of 0 ms.
        batch = self.consumer.poll(timeout_ms=math.ceil(wait_s * 1000), max_records=self.settings.batch_max_records)
        # A full poll means more is waiting: keep filling the batch rather than write a
        # backlog in small transactions (P1: 0.6x the bare loop when flushed on time alone).
        read = sum(len(records) for records in batch.values())
        self._drained = read < self.settings.batch_max_records
        metrics.update_lag(self.consumer)
        for partition, records in batch.items():
            if not records:
                continue
            if not self._unflushed:
                self._batch_started = time.monotonic()
            self._unflushed.setdefault(partition, records[0].offset)
            self._read_upto[partition] = records[-1].offset + 1
            metrics.RECORDS_CONSUMED.inc(len(records))
            for record in records:
                try:
                    trades = decode(record.value)
                except RecordError as error:
                    self.dead_letters.send(record, error)
                    continue
                for trade in trades:
                    self.sink.add(trade)
        return read

    def _due(self) -> bool:
        if not self._unflushed:
            return False
        full = self.sink.rows >= self.settings.batch_max_records
        age = time.monotonic() - self._batch_started
        return full or (self._drained and age >= self.settings.flush_interval_s) or age >= MAX_BATCH_AGE_S

    def checkpoint(self, wait_for_commit: bool) -> bool:
        """Flush QuestDB and the DLQ; False (and rewound) on failure. With
        ``wait_for_commit`` (shutdown, tests), then commit and wait for the answer."""
        if not self._unflushed:
            if wait_for_commit:
                self.commit(wait=True)
            return True
        try:
            self.sink.flush()
            self.dead_letters.flush()
        except Exception as exc:
            metrics.FLUSH_ERRORS.inc()
            metrics.HEALTHY.set(0)
            self._failing_since = self._failing_since or time.monotonic()
            self._last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.error("flush failed, rewinding to last commit", extra={"error": self._last_error})
            self._rewind()
            return False
        self._failing_since = 0.0
        metrics.HEALTHY.set(1)
        self._to_commit.update({tp: self._read_upto[tp] for tp in self._unflushed})
        self._unflushed.clear()
        if wait_for_commit:
            self.commit(wait=True)
        return True

    def commit(self, wait: bool) -> None:
        """Commit the offsets of what was flushed. Without ``wait`` the answer is not
        waited for (a commit that fails is covered by the next one)."""
        self._committed_at = time.monotonic()
        if not self._to_commit:
            return
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self._to_commit.items()
                   if tp in self.consumer.assignment()}
        self._to_commit.clear()
        if not offsets:
            return
        try:
            if wait:
                self.consumer.commit(offsets)
            else:
                self.consumer.commit_async(offsets, callback=_count_commit_errors)
        except Exception as exc:
            # The rows are in QuestDB; re-reading them after a restart is harmless (DEDUP).
            metrics.COMMIT_ERRORS.inc()
            log.warning("offset commit failed", extra={"error": str(exc)})

    def _rewind(self) -> None:
        self.sink.discard()
        self.dead_letters.discard()
        for partition, offset in self._unflushed.items():
            if partition in self.consumer.assignment():
                self.consumer.seek(partition, offset)
        self._unflushed.clear()

    # ConsumerRebalanceListener: hand partitions over with their work flushed. kafka-python 3
    # calls this on its network thread, where a blocking commit is refused: the commit is
    # sent asynchronously (if it loses the race with the rebalance, the next owner re-reads
    # rows QuestDB already has, which DEDUP absorbs).
    def on_partitions_revoked(self, revoked) -> None:
        metrics.ASSIGNED.set(max(0, len(self.consumer.assignment()) - len(revoked)))
        if revoked:
            metrics.PARTITIONS_REVOKED.inc(len(revoked))
            log.info("partitions revoked", extra={"partitions": sorted(str(tp) for tp in revoked)})
        if not self.checkpoint(wait_for_commit=False):
            log.warning("partitions revoked with an unflushed batch; the next owner re-reads it")
        self.commit(wait=False)

    def on_partitions_assigned(self, assigned) -> None:
        metrics.ASSIGNED.set(len(self.consumer.assignment()))
        log.info("partitions assigned", extra={"partitions": sorted(str(tp) for tp in assigned)})

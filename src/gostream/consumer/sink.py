"""Rows into QuestDB over ILP/HTTP, one transaction per flush.

The rows live in our own buffer, not the sender's, so a failed flush leaves them
untouched and the caller decides (rewind Kafka and drop them, here).
"""

from __future__ import annotations

import time

from questdb import Sender, TimestampMicros, TimestampNanos

from gostream.common.trade import Trade, inst_type
from gostream.consumer import metrics
from gostream.common.schema import TRADES_TABLE


def sender_conf(host: str, port: int, retry_timeout_s: float, username: str | None = None,
                password: str | None = None) -> str:
    # auto_flush off: we flush on our own size/timer, and only then commit Kafka.
    conf = f"http::addr={host}:{port};auto_flush=off;retry_timeout={int(retry_timeout_s * 1000)};"
    if username is not None:
        # ";" inside a value is written ";;" in the client's configuration string.
        conf += f"username={username.replace(';', ';;')};password={(password or '').replace(';', ';;')};"
    return conf


class QuestDBSink:
    def __init__(self, conf: str) -> None:
        self._sender = Sender.from_conf(conf)
        self._sender.establish()
        self._buffer = self._sender.new_buffer()
        self._exchange_ms: list[int] = []

    @property
    def rows(self) -> int:
        return len(self._exchange_ms)

    def add(self, trade: Trade) -> None:
        self._buffer.row(
            TRADES_TABLE,
            symbols={"symbol": trade.symbol, "inst_type": inst_type(trade.symbol), "side": trade.side},
            columns={
                "trade_id": trade.trade_id,
                "price": float(trade.price),
                "size": float(trade.size),
                "fills": trade.count,
                "received_at": TimestampMicros(trade.received_us),
            },
            at=TimestampNanos(trade.ts_ms * 1_000_000),
        )
        self._exchange_ms.append(trade.ts_ms)

    def flush(self) -> None:
        """Write every buffered row in one transaction; raises if QuestDB did not ack."""
        if not self._exchange_ms:
            return
        started = time.perf_counter()
        self._sender.flush(self._buffer, clear=False, transactional=True)
        acked = time.time()
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_ROWS.observe(self.rows)
        metrics.ROWS_WRITTEN.inc(self.rows)
        metrics.STORED_LATENCY.observe_many([max(0.0, acked - ts_ms / 1000) for ts_ms in self._exchange_ms])
        self.discard()

    def discard(self) -> None:
        self._buffer.clear()
        self._exchange_ms.clear()

    def close(self) -> None:
        self._sender.close()

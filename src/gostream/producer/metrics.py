"""The producer's Prometheus metrics (prefix gostream_producer_)."""

import time

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gostream.common.health import BatchHistogram

TRADES_PUBLISHED = Counter("gostream_producer_trades_published_total", "Trades acknowledged by Kafka")
TRADES_DROPPED = Counter(
    "gostream_producer_trades_dropped_total", "Trades dropped because the publish buffer was full"
)
PUBLISH_ERRORS = Counter("gostream_producer_publish_errors_total", "Kafka records (each up to PUBLISH_BATCH_MAX trades) that failed to send")
FRAMES_REJECTED = Counter(
    "gostream_producer_frames_rejected_total", "WebSocket frames or trade items that failed to parse", ["reason"]
)
EXCHANGE_ERRORS = Counter("gostream_producer_exchange_errors_total", "Error events sent by OKX", ["code"])
CONNECT_FAILURES = Counter(
    "gostream_producer_ws_connect_failures_total", "Failed attempts to open the OKX WebSocket, by kind",
    ["kind"],
)
RECONNECTS = Counter("gostream_producer_ws_reconnects_total", "WebSocket connections opened after the first")
WS_CONNECTED = Gauge("gostream_producer_ws_connected", "1 while every OKX WebSocket is open and subscribed")
CONNECTION_UP = Gauge("gostream_producer_ws_connection_up", "1 while this OKX WebSocket is open and subscribed", ["conn"])
CONNECTION_SYMBOLS = Gauge("gostream_producer_ws_connection_symbols", "Instruments this OKX WebSocket carries", ["conn"])
SUBSCRIBE_OPS = Counter("gostream_producer_ws_subscribe_requests_total", "Subscribe and unsubscribe requests sent",
                        ["op"])
BUFFERED = Gauge("gostream_producer_buffered_trades", "Trades waiting to be handed to the Kafka client")
DUPLICATES = Counter(
    "gostream_producer_duplicate_trades_total", "Trades received again (re-sent on subscribe) and skipped", ["symbol"]
)
GAPS = Counter("gostream_producer_gaps_detected_total", "Breaks in trade-id continuity", ["symbol"])
BACKFILLED = Counter("gostream_producer_trades_backfilled_total", "Missing trades fetched over REST", ["symbol"])
BACKFILL_ERRORS = Counter(
    "gostream_producer_backfill_errors_total", "Live gaps whose REST fill gave up (the completeness audit takes them over)"
)
ID_REGRESSIONS = Counter(
    "gostream_producer_id_regressions_total",
    "Trades whose id was far below the highest seen (another source or an exchange reset)", ["symbol"],
)
REST_REQUESTS = Counter(
    "gostream_producer_rest_requests_total", "OKX REST history-trades requests by purpose and result",
    ["purpose", "result"],
)
INSTRUMENTS_WRITTEN = Counter(
    "gostream_producer_instruments_written_total", "Instrument metadata rows written to QuestDB (new or changed)"
)
INSTRUMENT_WRITE_ERRORS = Counter(
    "gostream_producer_instrument_write_errors_total", "Instrument metadata writes QuestDB did not take (retried)"
)
REST_QUEUED = Gauge("gostream_producer_rest_jobs", "REST fill jobs queued or running, by purpose", ["purpose"])

# The completeness audit (audit.py), measured from the store.
TRADES_MISSING = Gauge(
    "gostream_trades_missing", "Trade ids missing from the store in open holes (being filled)", ["symbol"]
)
TRADES_UNRECOVERABLE = Gauge(
    "gostream_trades_unrecoverable", "Trade ids missing from the store that OKX no longer serves", ["symbol"]
)
HISTORY_REMAINING = Gauge(
    "gostream_producer_history_remaining_seconds",
    "Exchange time still to fetch of the HISTORY_WINDOW before the first stored trade (0: done)", ["symbol"],
)
AUDIT_PASSES = Counter("gostream_producer_audit_passes_total", "Completed completeness audit passes")
AUDIT_SECONDS = Gauge("gostream_producer_audit_last_pass_seconds", "Duration of the last completeness audit pass")

PUBLISHED_LATENCY = BatchHistogram(
    "gostream_producer_exchange_to_published_seconds",
    "Exchange time of a trade to Kafka acknowledging it",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def observe_published(trades) -> None:
    """Call when Kafka acknowledged ``trades`` (their exchange times are observed)."""
    now = time.time()
    PUBLISHED_LATENCY.observe_many([max(0.0, now - t.ts_ms / 1000) for t in trades])


class _Received:
    """Per symbol, the trades received and the exchange time of the newest, kept in plain
    dicts by the event loop and turned into metrics at scrape time:
    gostream_producer_trades_received_total{symbol},
    gostream_producer_last_trade_timestamp_seconds{symbol} and
    gostream_producer_feed_staleness_seconds{symbol} (now minus that time, so it keeps
    growing while the feed is silent). A labelled prometheus_client child costs a label
    lookup and a lock per call; two per trade were ~10 % of the producer's CPU at 10,000
    trades/s (py-spy, issue 18)."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.newest_s: dict[str, float] = {}

    def note(self, symbol: str, trades: int, newest_ts_ms: int) -> None:
        self.count[symbol] = self.count.get(symbol, 0) + trades
        self.newest_s[symbol] = newest_ts_ms / 1000

    def describe(self):
        return list(self._families())

    def collect(self):
        received, newest, stale = self._families()
        now = time.time()
        for symbol, count in list(self.count.items()):  # list(): one step under the GIL
            received.add_metric([symbol], count)
        for symbol, seconds in list(self.newest_s.items()):
            newest.add_metric([symbol], seconds)
            stale.add_metric([symbol], max(0.0, now - seconds))
        return [received, newest, stale]

    @staticmethod
    def _families():
        received = CounterMetricFamily("gostream_producer_trades_received", "Trades parsed from OKX pushes",
                                       labels=["symbol"])
        newest = GaugeMetricFamily("gostream_producer_last_trade_timestamp_seconds",
                                   "Exchange time of the newest trade received", labels=["symbol"])
        stale = GaugeMetricFamily("gostream_producer_feed_staleness_seconds",
                                  "Seconds since the exchange time of the newest trade received", labels=["symbol"])
        return received, newest, stale


RECEIVED = _Received()
REGISTRY.register(RECEIVED)

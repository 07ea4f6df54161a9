"""The producer's Prometheus metrics (prefix gostream_producer_)."""

from prometheus_client import Counter, Gauge

TRADES_RECEIVED = Counter("gostream_producer_trades_received_total", "Trades parsed from OKX pushes", ["symbol"])
TRADES_PUBLISHED = Counter("gostream_producer_trades_published_total", "Trades acknowledged by Kafka")
TRADES_DROPPED = Counter(
    "gostream_producer_trades_dropped_total", "Trades dropped because the publish buffer was full"
)
PUBLISH_ERRORS = Counter("gostream_producer_publish_errors_total", "Kafka sends that failed")
FRAMES_REJECTED = Counter(
    "gostream_producer_frames_rejected_total", "WebSocket frames or trade items that failed to parse", ["reason"]
)
EXCHANGE_ERRORS = Counter("gostream_producer_exchange_errors_total", "Error events sent by OKX", ["code"])
RECONNECTS = Counter("gostream_producer_ws_reconnects_total", "WebSocket connections opened after the first")
WS_CONNECTED = Gauge("gostream_producer_ws_connected", "1 while the WebSocket is open and subscribed")
LAST_TRADE_TIME = Gauge(
    "gostream_producer_last_trade_timestamp_seconds", "Exchange time of the newest trade received", ["symbol"]
)
BUFFERED = Gauge("gostream_producer_buffered_trades", "Trades waiting to be handed to the Kafka client")
DUPLICATES = Counter(
    "gostream_producer_duplicate_trades_total", "Trades received again (re-sent on subscribe) and skipped", ["symbol"]
)
GAPS = Counter("gostream_producer_gaps_detected_total", "Breaks in trade-id continuity", ["symbol"])
BACKFILLED = Counter("gostream_producer_trades_backfilled_total", "Missing trades fetched over REST", ["symbol"])
BACKFILL_ERRORS = Counter("gostream_producer_backfill_errors_total", "Gaps that could not be filled over REST")

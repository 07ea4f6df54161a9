from __future__ import annotations

from dataclasses import dataclass

from gostream.common.settings import KafkaSettings, QuestDBSettings, SettingsError, require_positive
from gostream.producer.history import parse_window
from gostream.producer.instruments import INST_TYPES
from gostream.producer.okx import CHANNELS


@dataclass(frozen=True)
class ProducerSettings(KafkaSettings, QuestDBSettings):
    okx_ws_url: str = "wss://ws.okx.com:8443/ws/v5/business"
    okx_rest_url: str = "https://www.okx.com"
    # trades-all (business endpoint): one trade per push; trades (public endpoint):
    # one push per taker order, fills aggregated, with a count.
    okx_channel: str = "trades-all"
    # Exact OKX instrument ids and shell-style patterns (BTC-USDT,ETH-*,*-USDT-SWAP);
    # patterns match the live instruments of OKX_INST_TYPES, re-read every
    # INSTRUMENTS_REFRESH_S (a new listing is followed within that, a delisted one dropped).
    symbols: tuple[str, ...] = ("BTC-USDT",)
    okx_inst_types: tuple[str, ...] = ("SPOT",)
    instruments_refresh_s: float = 30.0
    # Instruments per WebSocket: more are spread over more connections, opened no faster
    # than OKX's 3 a second.
    max_symbols_per_connection: int = 100
    health_port: int = 9101
    log_level: str = "INFO"
    # OKX closes a connection after 30 s without traffic: ping well before that.
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 10.0
    # First reconnect waits a random 0..initial s, then min, min*1.6, ... up to max.
    reconnect_initial_delay_s: float = 1.0
    reconnect_min_delay_s: float = 1.0
    reconnect_max_delay_s: float = 30.0
    # Trades held while Kafka is slow or down; beyond this they are dropped and counted.
    buffer_max_trades: int = 100_000
    # The most trades of one symbol in one Kafka record (codec v2): what is queued is
    # sent together, so this only matters in bursts.
    publish_batch_max: int = 500
    # Seconds the whole shutdown after SIGTERM may take (the chart passes what the pod's
    # grace period leaves): the audit and the REST page in flight get a share of it, the
    # Kafka flush what is left.
    shutdown_timeout_s: float = 20.0
    # A live gap larger than this (a long outage) is fetched at once only for its newest
    # trades; the rest is a hole in the store, filled by the audit.
    backfill_max_trades: int = 100_000
    # The completeness audit (audit.py): how often it looks for holes in the stored trade
    # ids; how long a hole's upper trade must have been stored before it counts (a live
    # gap is being filled meanwhile); the back-off between REST fills of one hole; after
    # how many fills it is given up; the largest hole it fetches (larger: another source's
    # ids in the same table, or a reset); how old a hole must be before OKX serving nothing
    # of it means "beyond its history" rather than "its history is lagging".
    audit_interval_s: float = 30.0
    audit_settle_s: float = 30.0
    hole_retry_min_s: float = 5.0
    hole_retry_max_s: float = 300.0
    hole_max_attempts: int = 50
    hole_max_ids: int = 1_000_000
    hole_gone_min_age_s: float = 600.0
    # History at start: the trades of this window before the first stored one are fetched
    # over REST (6h, 90m, 2d; 0: off). BTC-USDT prints ~5-30 trades/s: 6 h is 100k-650k
    # trades, 1,000-6,500 requests, 3-17 minutes at the REST queue's ~6.5 requests/s.
    history_window: str = "6h"

    @property
    def history_window_s(self) -> float:
        return parse_window(self.history_window)

    def check(self) -> None:
        super().check()
        try:
            parse_window(self.history_window)
        except ValueError as exc:
            raise SettingsError(f"HISTORY_WINDOW={exc}") from None
        unknown = [kind for kind in self.okx_inst_types if kind not in INST_TYPES]
        if unknown:
            raise SettingsError(f"OKX_INST_TYPES={','.join(self.okx_inst_types)}: expected some of {', '.join(INST_TYPES)}")
        if self.okx_channel not in CHANNELS:
            raise SettingsError(f"OKX_CHANNEL={self.okx_channel!r}: expected one of {', '.join(CHANNELS)}")
        if not self.okx_ws_url.startswith(("ws://", "wss://")):
            raise SettingsError(f"OKX_WS_URL={self.okx_ws_url!r}: expected a ws:// or wss:// URL")
        require_positive(
            self,
            "ping_interval_s",
            "pong_timeout_s",
            "reconnect_min_delay_s",
            "reconnect_max_delay_s",
            "buffer_max_trades",
            "publish_batch_max",
            "backfill_max_trades",
            "instruments_refresh_s",
            "max_symbols_per_connection",
            "audit_interval_s",
            "hole_retry_min_s",
            "hole_retry_max_s",
            "hole_max_attempts",
            "hole_max_ids",
        )
        if self.ping_interval_s >= 30:
            raise SettingsError("PING_INTERVAL_S must be under 30: OKX drops idle connections at 30 s")

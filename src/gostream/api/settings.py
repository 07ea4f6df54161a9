"""The api's settings, from the environment (see gostream.common.settings)."""

from __future__ import annotations

from dataclasses import dataclass

from gostream.common.forwarded import parse_networks
from gostream.common.settings import QuestDBSettings, SettingsError, require_positive
from gostream.common.trade import SYMBOL_PATTERN


@dataclass(frozen=True)
class ApiSettings(QuestDBSettings):
    questdb_database: str = "qdb"
    # Connections per gunicorn worker (the pool never opens more than twice this).
    questdb_pool_size: int = 8
    questdb_connect_timeout_s: int = 3
    # /stream: how often new trades are looked for (one indexed query per symbol per worker
    # while somebody watches it; it bounds how late a trade reaches the page), and the
    # keep-alive comment period.
    stream_poll_ms: int = 50
    stream_keepalive_s: float = 15.0
    # Open streams a worker holds at most; beyond, a new one gets 503 with Retry-After (the
    # gunicorn config keeps connections for probes and requests above this).
    stream_max: int = 10_000
    # /candles response cache (per worker): a body is served for at most this long after
    # its query was sent (0: no cache, every request queries QuestDB); at most this many
    # bodies and megabytes are kept.
    candles_cache_ms: int = 1000
    candles_cache_entries: int = 64
    candles_cache_mb: int = 16
    default_symbol: str = "BTC-USDT"
    log_level: str = "INFO"
    # X-Forwarded-For/-Proto/-Host: how many proxies in front of the api append to them (the
    # frontend's /api proxy or an ingress controller: 1; 0 trusts none), and the peers whose
    # headers are believed at all (CIDRs); anyone else's are ignored.
    trusted_proxy_hops: int = 1
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

    def check(self) -> None:
        require_positive(self, "questdb_pool_size", "questdb_connect_timeout_s", "stream_poll_ms", "stream_keepalive_s", "stream_max",
                         "candles_cache_entries", "candles_cache_mb")
        if not 0 <= self.candles_cache_ms <= 60_000:
            raise SettingsError(f"CANDLES_CACHE_MS must be 0 (off) .. 60000, got {self.candles_cache_ms!r}")
        if not 0 <= self.trusted_proxy_hops <= 10:
            raise SettingsError(f"TRUSTED_PROXY_HOPS must be 0 (trust none) .. 10, got {self.trusted_proxy_hops!r}")
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise SettingsError(f"TRUSTED_PROXIES: {exc}") from None
        if not SYMBOL_PATTERN.match(self.default_symbol):
            raise SettingsError(f"DEFAULT_SYMBOL={self.default_symbol!r}: not an instrument id like BTC-USDT")

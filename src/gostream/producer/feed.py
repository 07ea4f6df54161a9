"""The OKX WebSocket session: connect, subscribe, keep alive, reconnect.

Reconnecting is the websockets library's ``async for ws in connect(...)`` iterator,
which retries failed connection attempts with exponential backoff and jitter. A session
that ends (server close, missed pong, upgrade notice) just continues the loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from functools import partial

from websockets.asyncio.client import connect
from websockets.client import backoff
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gostream.common.trade import Trade
from gostream.producer import metrics, okx
from gostream.producer.gaps import Continuity, Gap, Lost, Regression
from gostream.producer.rest import Fill, HistoryFetcher, Priority
from gostream.producer.settings import ProducerSettings

log = logging.getLogger(__name__)

# How long a trade-id regression stays in /readyz after it happened.
REGRESSION_SHOWN_S = 600.0
OFFLINE_HINT = "no internet? `make up EXCHANGE=sim` runs a simulated OKX"


def connect_failure(exc: BaseException, url: str) -> str:
    """What went wrong opening the WebSocket, in words a user can act on."""
    target = url.split("://", 1)[-1].split("/", 1)[0]
    if isinstance(exc, socket.gaierror):
        return f"DNS: cannot resolve {target.rsplit(':', 1)[0]} ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return f"refused: nothing accepts connections at {target}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: handshake with {target} failed ({exc.reason or exc})"
    if isinstance(exc, TimeoutError):
        return f"timeout: no answer from {target} (a firewall dropping packets?)"
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code} from {url} (a proxy or firewall in the way?)"
    if isinstance(exc, OSError):
        return f"network: {exc.strerror or exc} reaching {target}"
    return f"{type(exc).__name__}: {exc}"


class Reconnect(Exception):
    """End this session and open a new connection."""


class Feed:
    """One WebSocket session at a time; hands every parsed trade to ``on_trade``."""

    def __init__(self, settings: ProducerSettings, on_trade: Callable[[Trade], object]) -> None:
        self.settings = settings
        self.on_trade = on_trade
        self.subscribed: set[str] = set()
        self.sessions = 0
        self.received = 0
        self.continuity = Continuity()
        self.lost = Lost()
        # Every REST fill (live gaps first, then the audit's holes) shares its one worker.
        self.history = HistoryFetcher(settings.okx_rest_url, on_trade=on_trade).start()
        self._regressions: list[tuple[float, Regression]] = []
        self.connect_error = ""  # the last failed connection attempt, until one succeeds
        self._delays = partial(
            backoff,
            initial_delay=settings.reconnect_initial_delay_s,
            min_delay=settings.reconnect_min_delay_s,
            max_delay=settings.reconnect_max_delay_s,
        )

    @property
    def live(self) -> bool:
        return self.subscribed >= set(self.settings.symbols)

    def problems(self) -> list[str]:
        if self.connect_error:
            return [f"okx: cannot connect: {self.connect_error}" + ("" if self.sessions else f"; {OFFLINE_HINT}")]
        if self.sessions == 0:
            return ["okx: never connected"]
        missing = sorted(set(self.settings.symbols) - self.subscribed)
        found = [f"okx: not subscribed to {', '.join(missing)}"] if missing else []
        shown_since = time.monotonic() - REGRESSION_SHOWN_S
        found += [f"okx: trade ids of {r.symbol} went back from {r.from_id} to {r.to_id} "
                  f"{time.monotonic() - at:.0f} s ago: another exchange behind OKX_WS_URL, or a reset?"
                  for at, r in self._regressions if at > shown_since]
        return found

    async def run(self) -> None:
        s = self.settings
        quick_failures = self._delays()
        async for ws in connect(
            s.okx_ws_url,
            ping_interval=None,  # OKX wants a text "ping", sent below
            open_timeout=10,
            close_timeout=2,
            max_size=2**22,
            reconnect_delays=self._delays,
            process_exception=self._connect_failed,
        ):
            started = time.monotonic()
            self.connect_error = ""
            self.sessions += 1
            if self.sessions > 1:
                metrics.RECONNECTS.inc()
            log.info("okx connected", extra={"url": s.okx_ws_url, "session": self.sessions})
            try:
                await ws.send(okx.subscribe_request(s.okx_channel, s.symbols))
                await self._session(ws)
            except (ConnectionClosed, Reconnect, TimeoutError) as exc:
                log.warning("okx session ended", extra={"reason": f"{type(exc).__name__}: {exc}"})
            finally:
                self.subscribed.clear()
                metrics.WS_CONNECTED.set(0)
                await ws.close()
            # The iterator only backs off when connecting fails; a server that accepts
            # and drops at once would otherwise be hammered (OKX allows 3 connects/s).
            if time.monotonic() - started < 5:
                await asyncio.sleep(next(quick_failures))
            else:
                quick_failures = self._delays()

    def _connect_failed(self, exc: Exception) -> Exception | None:
        """Every failed attempt is retried with back-off (a 403 or a bad certificate may be
        a proxy's passing trouble too); each new kind of failure is said once, loudly."""
        problem = connect_failure(exc, self.settings.okx_ws_url)
        if problem != self.connect_error:
            log.error("okx connect failed", extra={"problem": problem, "hint": OFFLINE_HINT if not self.sessions else ""})
        self.connect_error = problem
        metrics.CONNECT_FAILURES.labels(problem.split(":", 1)[0]).inc()
        return None

    async def _session(self, ws) -> None:
        s = self.settings
        # asyncio.timeout rather than wait_for: on Python 3.11 wait_for can swallow a
        # cancellation (our SIGTERM) that arrives just as a message does.
        while True:
            try:
                async with asyncio.timeout(s.ping_interval_s):
                    message = await ws.recv()
            except TimeoutError:
                await ws.send("ping")
                try:
                    async with asyncio.timeout(s.pong_timeout_s):
                        message = await ws.recv()
                except TimeoutError:
                    raise Reconnect(f"no answer to ping within {s.pong_timeout_s} s") from None
            self._handle(okx.parse_frame(message, time.time_ns() // 1000))

    def _handle(self, frame: okx.Frame) -> None:
        match frame:
            case okx.Trades(trades=trades, rejected=rejected):
                for reason in rejected:
                    metrics.FRAMES_REJECTED.labels(reason).inc()
                    log.warning("okx trade item rejected", extra={"reason": reason})
                for trade in trades:
                    new, gap = self.continuity.observe(trade)
                    if not new:
                        metrics.DUPLICATES.labels(trade.symbol).inc()
                        continue
                    if gap is not None:
                        self._backfill(gap)
                    if self.continuity.regressions:
                        self._regressed(self.continuity.regressions.pop())
                    self.received += 1
                    metrics.TRADES_RECEIVED.labels(trade.symbol).inc()
                    metrics.LAST_TRADE_TIME.labels(trade.symbol).set(trade.ts_ms / 1000)
                    self.on_trade(trade)
            case okx.Subscribed(symbol=symbol):
                self.subscribed.add(symbol)
                if self.live:
                    metrics.WS_CONNECTED.set(1)
                    log.info("okx subscribed", extra={"symbols": sorted(self.subscribed)})
            case okx.Pong() | okx.OtherEvent():
                pass
            case okx.Notice(code=okx.UPGRADE_NOTICE, message=message):
                raise Reconnect(f"service upgrade notice: {message}")
            case okx.Notice(code=code, message=message):
                log.info("okx notice", extra={"code": code, "detail": message})
            case okx.ExchangeError(code=code, message=message):
                metrics.EXCHANGE_ERRORS.labels(code).inc()
                log.error("okx error event", extra={"code": code, "detail": message})
            case okx.Rejected(reason=reason, detail=detail):
                metrics.FRAMES_REJECTED.labels(reason).inc()
                log.warning("okx frame rejected", extra={"reason": reason, "detail": detail})

    def _backfill(self, gap: Gap) -> None:
        metrics.GAPS.labels(gap.symbol).inc()
        log.warning("trade-id gap, backfilling", extra={"symbol": gap.symbol, "first_id": gap.first_id,
                                                         "last_id": gap.last_id, "missing": gap.size})
        self.refetch(gap)

    def _regressed(self, regression: Regression) -> None:
        # Taken, not skipped: skipping would drop a whole feed that happens to have lower
        # ids than what was seen (another exchange's store, a reset); DEDUP absorbs repeats.
        metrics.ID_REGRESSIONS.labels(regression.symbol).inc()
        log.error("trade ids went back: another exchange behind OKX_WS_URL, or a reset? taking the new ids",
                  extra={"symbol": regression.symbol, "from_id": regression.from_id, "to_id": regression.to_id})
        self._regressions = [*self._regressions[-9:], (time.monotonic(), regression)]

    def refetch(self, gap: Gap) -> None:
        """Queue a gap for REST, ahead of the audit's holes (newest first when too big:
        what is left over is a hole in the store, which the audit takes over)."""
        cap = self.settings.backfill_max_trades
        if gap.size > cap:
            log.error("gap too large, fetching only its newest trades now",
                      extra={"symbol": gap.symbol, "missing": gap.size, "fetching": cap})
            gap = Gap(gap.symbol, gap.last_id - cap + 1, gap.last_id)
        self.history.submit(Fill(gap.symbol, gap.first_id, gap.last_id, Priority.LIVE, on_done=self._filled))

    async def recover_lost(self, kafka_ok: Callable[[], bool], every_s: float = 2.0) -> None:
        """Once Kafka takes trades again, fetch the ones it lost from REST."""
        while True:
            await asyncio.sleep(every_s)
            if self.lost and kafka_ok():
                for gap in self.lost.take():
                    log.warning("re-fetching trades lost while Kafka was down",
                                extra={"symbol": gap.symbol, "first_id": gap.first_id, "last_id": gap.last_id})
                    self.refetch(gap)

    def _filled(self, job: Fill) -> None:
        extra = {"symbol": job.symbol, "first_id": job.first_id, "last_id": job.last_id, "missing": job.size,
                 "found": job.found, "requests": job.pages}
        if job.complete:
            log.info("backfilled", extra=extra)
            return
        metrics.BACKFILL_ERRORS.inc()
        log.warning("gap not filled completely; the completeness audit takes it over",
                    extra={**extra, "error": job.error, "beyond_history": job.exhausted})

    def close(self) -> None:
        """Let the page in flight finish handing its trades over; what is still queued is
        a hole in the store, which the audit finds after the restart."""
        self.history.close()

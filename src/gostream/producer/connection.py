"""One OKX WebSocket: connect, subscribe its share of the instruments, keep alive, reconnect.

Reconnecting is the websockets library's ``async for ws in connect(...)`` iterator, which
retries failed attempts with exponential backoff and jitter; every attempt of every
connection also waits for a shared ``Pacer`` (OKX allows 3 connection requests a second per
IP). A session that ends (server close, missed pong, upgrade notice) continues the loop.
The instruments a connection carries can change while it runs: the difference is
subscribed or unsubscribed in requests of at most 64 KB, and never more than OKX's 480
such requests an hour per connection (beyond that, changes wait).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from websockets.asyncio.client import connect
from websockets.client import backoff
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gostream.producer import metrics, okx
from gostream.producer.settings import ProducerSettings

log = logging.getLogger(__name__)

OFFLINE_HINT = "no internet? `make up EXCHANGE=sim` runs a simulated OKX"
CONNECTS_PER_S = 2.5  # OKX: 3 connection requests per second per IP
OPS_PER_HOUR = 470  # OKX: 480 subscribe/unsubscribe requests per connection per hour
MAX_REQUEST_BYTES = 60_000  # OKX: 64 KB per request
POLL_S = 0.5  # how often a quiet session looks at its keepalive and its changes


class Reconnect(Exception):
    """End this session and open a new connection."""


class Pacer:
    """Connection attempts spaced out across every connection of the process."""

    def __init__(self, per_second: float = CONNECTS_PER_S) -> None:
        self.spacing = 1.0 / per_second
        self._next = 0.0

    def reserve(self) -> float:
        """Book the next free slot; the seconds to wait for it."""
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.spacing
        return slot - now

    async def wait(self) -> None:
        await asyncio.sleep(self.reserve())


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


def chunks(channel: str, symbols: list[str], op: str) -> list[tuple[str, set[str]]]:
    """(request, its symbols) pairs for ``symbols``, each request under OKX's size limit."""
    out, batch = [], []
    for symbol in symbols:
        batch.append(symbol)
        if len(okx.subscribe_request(channel, tuple(batch), op)) > MAX_REQUEST_BYTES:
            batch.pop()
            out.append((okx.subscribe_request(channel, tuple(batch), op), set(batch)))
            batch = [symbol]
    if batch:
        out.append((okx.subscribe_request(channel, tuple(batch), op), set(batch)))
    return out


class Connection:
    """A WebSocket carrying the instruments in ``wanted``; frames go to ``handle``."""

    def __init__(self, index: int, settings: ProducerSettings, pacer: Pacer,
                 handle: Callable[[okx.Frame, Connection], None]) -> None:
        self.index = index
        self.label = str(index)
        self.settings = settings
        self.pacer = pacer
        self.handle = handle
        self.wanted: set[str] = set()
        self.subscribed: set[str] = set()  # acknowledged in this session
        self.sessions = 0
        self.connect_error = ""  # the last failed attempt, until one succeeds
        self._requested: set[str] = set()  # asked for in this session
        self._ops: deque[float] = deque()  # times of this session's (un)subscribe requests
        self._changed = True
        self._delays = partial(backoff, initial_delay=settings.reconnect_initial_delay_s,
                               min_delay=settings.reconnect_min_delay_s, max_delay=settings.reconnect_max_delay_s)

    @property
    def live(self) -> bool:
        return bool(self.wanted) and self.subscribed >= self.wanted

    def carry(self, symbols: set[str]) -> None:
        self.wanted = set(symbols)
        self._changed = True
        metrics.CONNECTION_SYMBOLS.labels(self.label).set(len(self.wanted))

    def problems(self) -> list[str]:
        name = f"okx connection {self.index}"
        if self.connect_error:
            hint = "" if self.sessions else f"; {OFFLINE_HINT}"
            return [f"okx: cannot connect: {self.connect_error}{hint} ({name})"]
        if self.sessions == 0:
            return [f"{name}: never connected"]
        missing = sorted(self.wanted - self.subscribed)
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            return [f"{name}: not subscribed to {shown}"]
        return []

    def _paced_delays(self):
        for delay in self._delays():
            yield delay + self.pacer.reserve()

    async def run(self) -> None:
        s = self.settings
        quick_failures = self._delays()
        await self.pacer.wait()
        async for ws in connect(
            s.okx_ws_url,
            ping_interval=None,  # OKX wants a text "ping", sent below
            open_timeout=10,
            close_timeout=2,
            max_size=2**22,
            reconnect_delays=self._paced_delays,
            process_exception=self._connect_failed,
        ):
            started = time.monotonic()
            self.connect_error = ""
            self.sessions += 1
            if self.sessions > 1:
                metrics.RECONNECTS.inc()
            log.info("okx connected", extra={"url": s.okx_ws_url, "connection": self.index, "session": self.sessions})
            self._requested.clear()
            self._ops.clear()
            self._changed = True
            try:
                await self._session(ws)
            except (ConnectionClosed, Reconnect, TimeoutError) as exc:
                log.warning("okx session ended", extra={"connection": self.index,
                                                        "reason": f"{type(exc).__name__}: {exc}"})
            finally:
                self.subscribed.clear()
                metrics.CONNECTION_UP.labels(self.label).set(0)
                await ws.close()
            # The iterator only backs off when connecting fails; a server that accepts
            # and drops at once would otherwise be hammered.
            if time.monotonic() - started < 5:
                await asyncio.sleep(next(quick_failures))
            else:
                quick_failures = self._delays()
            await self.pacer.wait()

    def _connect_failed(self, exc: Exception) -> Exception | None:
        """Every failed attempt is retried with back-off (a 403 or a bad certificate may be
        a proxy's passing trouble too); each new kind of failure is said once, loudly."""
        problem = connect_failure(exc, self.settings.okx_ws_url)
        if problem != self.connect_error:
            log.error("okx connect failed", extra={"problem": problem, "connection": self.index,
                                                   "hint": OFFLINE_HINT if not self.sessions else ""})
        self.connect_error = problem
        metrics.CONNECT_FAILURES.labels(problem.split(":", 1)[0]).inc()
        return None

    async def _sync(self, ws) -> None:
        """Subscribe what is wanted and not asked for, unsubscribe what is no longer wanted."""
        self._changed = False
        now = time.monotonic()
        while self._ops and now - self._ops[0] > 3600:
            self._ops.popleft()
        channel = self.settings.okx_channel
        changes = [("unsubscribe", sorted(self._requested - self.wanted)),
                   ("subscribe", sorted(self.wanted - self._requested))]
        for op, symbols in changes:
            for request, batch in chunks(channel, symbols, op):
                if len(self._ops) >= OPS_PER_HOUR:
                    self._changed = True  # try again once older requests leave the hour
                    log.warning("okx request budget of the hour spent, change deferred",
                                extra={"connection": self.index, "op": op, "symbols": len(batch)})
                    return
                await ws.send(request)
                self._ops.append(now)
                metrics.SUBSCRIBE_OPS.labels(op).inc()
                if op == "subscribe":
                    self._requested |= batch
                else:
                    self._requested -= batch
                    self.subscribed -= batch

    async def _session(self, ws) -> None:
        s = self.settings
        last_heard = time.monotonic()
        ping_sent: float | None = None
        while True:
            if self._changed:
                await self._sync(ws)
            # Messages are read for POLL_S under one timeout, not one timeout each (a timer
            # set and cancelled per push was ~4 % of the producer's CPU at 10,000 pushes/s:
            # py-spy, issue 18); cancelling recv() loses nothing (websockets says so).
            # asyncio.timeout rather than wait_for: on Python 3.11 wait_for can swallow a
            # cancellation (our SIGTERM) that arrives just as a message does.
            try:
                async with asyncio.timeout(POLL_S):
                    while True:
                        message = await ws.recv()
                        last_heard, ping_sent = time.monotonic(), None
                        self._receive(message)
            except TimeoutError:
                now = time.monotonic()
                if ping_sent is not None and now - ping_sent >= s.pong_timeout_s:
                    raise Reconnect(f"no answer to ping within {s.pong_timeout_s} s") from None
                if ping_sent is None and now - last_heard >= s.ping_interval_s:
                    await ws.send("ping")
                    ping_sent = now

    def _receive(self, message: str | bytes) -> None:
        frame = okx.parse_frame(message, time.time_ns() // 1000)
        if isinstance(frame, okx.Subscribed) and frame.symbol in self._requested:
            self.subscribed.add(frame.symbol)
            if self.live:
                metrics.CONNECTION_UP.labels(self.label).set(1)
                log.info("okx subscribed", extra={"connection": self.index, "symbols": len(self.subscribed)})
        self.handle(frame, self)


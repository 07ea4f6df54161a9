"""The feed: every instrument followed, spread over as many OKX WebSockets as needed.

``SYMBOLS`` names instruments by id or by pattern; patterns are resolved against OKX's
instrument list and re-resolved every ``INSTRUMENTS_REFRESH_S``, so a new listing is
followed within a minute and a delisted one dropped. Each ``Connection`` carries at most
``MAX_SYMBOLS_PER_CONNECTION`` of them with its own keepalive and reconnect; one dropping
does not disturb the others. Every frame of every connection comes here: trade-id
continuity per symbol (gaps go to the REST queue), publishing, and what /readyz says.
The instrument list is read every refresh even for exact ids only: what OKX says of the
followed instruments (tick and lot sizes) goes to the store's ``instruments`` table.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

from gostream.common.schema import SchemaError
from gostream.common.trade import Trade, inst_type
from gostream.producer import metrics, okx
from gostream.producer.connection import Connection, Pacer, Reconnect
from gostream.producer.gaps import Continuity, Gap, Lost, Regression
from gostream.producer.instruments import INST_TYPES, Catalogue, Listing, Registry, is_pattern, resolve
from gostream.producer.rest import Fill, HistoryFetcher, Priority
from gostream.producer.settings import ProducerSettings

log = logging.getLogger(__name__)

# How long a trade-id regression stays in /readyz after it happened.
REGRESSION_SHOWN_S = 600.0
_REFUSED_INST = re.compile(r"instId:([A-Za-z0-9-]+)")


class Feed:
    """The connections, and what their frames become. ``adopt`` is awaited with each batch
    of newly followed symbols before they are subscribed (resume, history)."""

    def __init__(self, settings: ProducerSettings, on_trade: Callable[[Trade], object],
                 adopt: Callable[[set[str]], Awaitable[None]] | None = None,
                 registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.on_trade = on_trade
        self.adopt = adopt
        self.received = 0
        self.continuity = Continuity()
        self.lost = Lost()
        # Every REST fill (live gaps first, then the audit's holes) shares its one worker.
        self.history = HistoryFetcher(settings.okx_rest_url, on_trade=on_trade).start()
        self.catalogue = Catalogue(settings.okx_rest_url)
        self.symbols: set[str] = set()  # followed now
        self.connections: list[Connection] = []
        self._tasks: dict[Connection, asyncio.Task] = {}
        self._pacer = Pacer()
        self._listings: list[Listing] | None = None
        self._resolution_problems: list[str] = []
        self._refused: dict[str, str] = {}  # symbol -> OKX's error when subscribing it
        self._regressions: list[tuple[float, Regression]] = []
        metrics.WS_CONNECTED.set_function(lambda: 1 if self.live else 0)

    @property
    def patterns(self) -> bool:
        return any(is_pattern(spec) for spec in self.settings.symbols)

    @property
    def live(self) -> bool:
        return bool(self.connections) and all(conn.live for conn in self.connections)

    def problems(self) -> list[str]:
        found = list(self._resolution_problems)
        if not self.connections and not self.symbols:
            found.append("okx: no instrument to follow yet")
        for conn in self.connections:
            found += [p for p in conn.problems() if p not in found]
        found += [f"okx: {symbol} refused: {error}" for symbol, error in sorted(self._refused.items())]
        shown_since = time.monotonic() - REGRESSION_SHOWN_S
        found += [f"okx: trade ids of {r.symbol} went back from {r.from_id} to {r.to_id} "
                  f"{time.monotonic() - at:.0f} s ago: another exchange behind OKX_WS_URL, or a reset?"
                  for at, r in self._regressions if at > shown_since]
        return found

    # -- which instruments, on which connection ------------------------------------------
    async def run(self) -> None:
        while True:
            await self.refresh()
            wait_s = self.settings.instruments_refresh_s
            if not self._tasks:
                await asyncio.sleep(self.settings.instruments_refresh_s)
                continue
            done, _ = await asyncio.wait(list(self._tasks.values()), timeout=wait_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            for conn, task in list(self._tasks.items()):
                if task in done and not task.cancelled():
                    # A connection's loop only ends by a bug: say so and start it again.
                    log.error("okx connection stopped", extra={"connection": conn.index,
                                                               "error": repr(task.exception())})
                    self._tasks[conn] = asyncio.create_task(conn.run(), name=f"okx-{conn.index}")

    async def refresh(self) -> None:
        """Resolve ``SYMBOLS`` again, move the connections to the result and store the
        followed instruments' metadata. Exact ids alone are followed as given, before the
        list is read (for their metadata only)."""
        specs = self.settings.symbols
        exact_kinds = tuple(kind for kind in (inst_type(spec) for spec in specs if not is_pattern(spec))
                            if kind in INST_TYPES)
        if not self.patterns:
            self._resolution_problems = []
            await self._follow(resolve(specs, None).symbols)
            try:
                fetched = await asyncio.to_thread(self.catalogue.fetch, tuple(dict.fromkeys(exact_kinds)))
            except (OSError, ValueError) as exc:
                log.warning("could not list OKX's instruments: their metadata waits for the next refresh",
                            extra={"error": str(exc)[:300]})
                return
            return await self._register(fetched)
        kinds = tuple(dict.fromkeys(self.settings.okx_inst_types + exact_kinds))
        fetched = None
        try:
            fetched = self._listings = await asyncio.to_thread(self.catalogue.fetch, kinds)
        except (OSError, ValueError) as exc:
            log.error("could not list OKX's instruments; keeping the last list",
                      extra={"error": str(exc)[:300], "inst_types": kinds})
            if self._listings is None:
                self._resolution_problems = [f"instruments: cannot list {', '.join(kinds)}: {str(exc)[:200]}"]
                return await self._follow(resolve(specs, None).symbols)
        resolution = resolve(specs, self._listings)
        self._resolution_problems = resolution.problems
        await self._follow(resolution.symbols)
        if fetched is not None:
            await self._register(fetched)

    async def _register(self, listings: list[Listing]) -> None:
        """Store the metadata of the followed instruments that is new or changed. Never
        fails the feed: without QuestDB it is tried again with the next refresh."""
        if self.registry is None:
            return
        try:
            written = await asyncio.to_thread(self.registry.store, listings, set(self.symbols))
        except (OSError, SchemaError) as exc:
            metrics.INSTRUMENT_WRITE_ERRORS.inc()
            log.warning("could not store instrument metadata; trying again with the next refresh",
                        extra={"error": str(exc)[:300]})
            return
        if written:
            metrics.INSTRUMENTS_WRITTEN.inc(written)
            log.info("instrument metadata stored", extra={"count": written})

    async def _follow(self, wanted: set[str]) -> None:
        added, dropped = wanted - self.symbols, self.symbols - wanted
        if added and self.adopt is not None:
            await self.adopt(added)
        if added or dropped:
            log.info("instruments followed", extra={"count": len(wanted), "added": sorted(added)[:50],
                                                    "dropped": sorted(dropped)[:50]})
        self.symbols = set(wanted)
        for symbol in dropped:
            self._refused.pop(symbol, None)
        self._assign()

    def _assign(self) -> None:
        """Each symbol stays on its connection; new ones fill the connections with room,
        then new connections; a connection left with nothing closes."""
        most = self.settings.max_symbols_per_connection
        placed: set[str] = set()
        for conn in self.connections:
            keep = conn.wanted & self.symbols
            if keep != conn.wanted:
                conn.carry(keep)
            placed |= keep
        waiting = sorted(self.symbols - placed)
        for conn in self.connections:
            room = most - len(conn.wanted)
            if waiting and room > 0:
                conn.carry(conn.wanted | set(waiting[:room]))
                waiting = waiting[room:]
        while waiting:
            conn = Connection(max((c.index for c in self.connections), default=-1) + 1, self.settings, self._pacer,
                              self._handle)
            conn.carry(set(waiting[:most]))
            waiting = waiting[most:]
            self.connections.append(conn)
            self._tasks[conn] = asyncio.create_task(conn.run(), name=f"okx-{conn.index}")
        for conn in [c for c in self.connections if not c.wanted]:
            self.connections.remove(conn)
            self._tasks.pop(conn).cancel()
            metrics.CONNECTION_UP.remove(conn.label)
            metrics.CONNECTION_SYMBOLS.remove(conn.label)

    async def close_connections(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _handle(self, frame: okx.Frame, conn: Connection) -> None:
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
                    metrics.RECEIVED.note(trade.symbol, 1, trade.ts_ms)
                    self.on_trade(trade)
            case okx.Subscribed(symbol=symbol):
                self._refused.pop(symbol, None)
            case okx.Pong() | okx.OtherEvent():
                pass
            case okx.Notice(code=okx.UPGRADE_NOTICE, message=message):
                raise Reconnect(f"service upgrade notice: {message}")
            case okx.Notice(code=code, message=message):
                log.info("okx notice", extra={"code": code, "detail": message})
            case okx.ExchangeError(code=code, message=message):
                metrics.EXCHANGE_ERRORS.labels(code).inc()
                log.error("okx error event", extra={"code": code, "detail": message, "connection": conn.index})
                refused = _REFUSED_INST.search(message)
                if refused and refused.group(1) in conn.wanted:
                    self._refused[refused.group(1)] = f"{code} {message}"
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

    def close(self, timeout_s: float = 5.0) -> None:
        """Let the page in flight finish handing its trades over (for up to ``timeout_s``);
        what is still queued is a hole in the store, which the audit finds after the restart."""
        self.history.close(timeout_s)

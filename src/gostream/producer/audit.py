"""Completeness measured from the store: find every hole in the stored trade ids, keep a
durable ledger of them in QuestDB, and fill them over REST until they are closed.

OKX trade ids are consecutive per instrument (a row on the ``trades`` channel covers
``fills`` ids ending at its ``trade_id``), so a hole is a run of ids missing between two
stored rows. Live gaps are filled as the WebSocket reveals them (``feed``); this is the
net under that: whatever a fill could not fetch (REST down, rate limited, lagging),
whatever a restart, a crash or a lost Kafka record left behind, shows up here as a hole,
whichever way it came.

The ledger (table ``trade_holes``) is the durable part: one row per hole, re-written
whole when its state changes, read back at start-up. A hole is ``open`` until the store
holds every id of it (``closed``), or until OKX shows it no longer serves those ids, or
after ``hole_max_attempts`` fills (``unrecoverable``, with how many are gone).

The pure decisions (``Ledger``) are kept apart from the queries (``Store``) and the loop
(``Auditor``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from gostream.common.schema import HOLES_TABLE, TRADES_TABLE, SchemaError, query
from gostream.common.trade import SYMBOL_PATTERN
from gostream.producer import metrics
from gostream.producer.rest import Fill, Priority

log = logging.getLogger(__name__)

# An unrecoverable hole is re-counted for this long after its last change (a fill's last
# trades may land after it was marked), then left alone.
RECHECK_GONE_US = 600_000_000


@dataclass(frozen=True)
class Hole:
    """Ids ``first_id..last_id`` of ``symbol`` missing between two stored rows.

    ``after_us``/``before_us``: exchange times of those rows; ``settled_us``: when the row
    above it was received (a hole whose upper row just arrived may be a live gap still
    being filled)."""

    symbol: str
    first_id: int
    last_id: int
    after_us: int
    before_us: int
    settled_us: int = 0

    @property
    def size(self) -> int:
        return self.last_id - self.first_id + 1


@dataclass(frozen=True)
class Entry:
    """One ledger row."""

    symbol: str
    first_id: int
    last_id: int
    after_us: int
    before_us: int
    found_us: int
    missing: int
    state: str = "open"
    attempts: int = 0
    detail: str = ""
    updated_us: int = 0
    next_attempt_us: int = 0
    closed_us: int | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        return self.symbol, self.first_id, self.found_us

    def covers(self, hole: Hole) -> bool:
        return hole.symbol == self.symbol and hole.first_id <= self.last_id and self.first_id <= hole.last_id


@dataclass(frozen=True)
class Policy:
    settle_s: float = 30.0
    retry_min_s: float = 5.0
    retry_max_s: float = 300.0
    max_attempts: int = 50
    # OKX serving nothing below a hole means its ids are beyond the ~3 months of history,
    # unless the hole is this young: then its history is only lagging (a new listing).
    gone_min_age_s: float = 600.0
    # A hole larger than this is not fetched (nine hours of BTC-USDT at ~30 trades/s): it is
    # another source's ids in the same table, or an exchange reset, not missed trades.
    max_ids: int = 1_000_000


class Ledger:
    """The holes known, and what to do about them. Pure: times are passed in."""

    def __init__(self, policy: Policy, entries: Iterable[Entry] = ()) -> None:
        self.policy = policy
        self.entries: dict[tuple, Entry] = {e.key: e for e in entries}

    def active(self, symbol: str | None = None) -> list[Entry]:
        return sorted((e for e in self.entries.values() if e.state != "closed" and symbol in (None, e.symbol)),
                      key=lambda e: (e.symbol, e.first_id))

    def missing(self, symbol: str, state: str = "open") -> int:
        return sum(e.missing for e in self.active(symbol) if e.state == state)

    def found(self, holes: Iterable[Hole], now_us: int) -> list[Entry]:
        """Record the settled holes no entry covers yet; the new entries."""
        new = []
        for hole in holes:
            if hole.settled_us > now_us - int(self.policy.settle_s * 1e6):
                continue
            if any(e.covers(hole) for e in self.active(hole.symbol)):
                continue
            entry = Entry(hole.symbol, hole.first_id, hole.last_id, hole.after_us, hole.before_us, now_us,
                          hole.size, updated_us=now_us, next_attempt_us=now_us)
            if hole.size > self.policy.max_ids:
                entry = dataclasses.replace(
                    entry, state="unrecoverable", closed_us=now_us,
                    detail=f"{hole.size} ids missing, more than HOLE_MAX_IDS={self.policy.max_ids}: "
                           "another source in the same table, or an exchange reset?")
            self.entries[entry.key] = entry
            new.append(entry)
        return new

    def rechecked(self, entry: Entry, missing: int, now_us: int) -> Entry | None:
        """The store now lacks ``missing`` ids of ``entry``; the changed entry, if any."""
        if missing == 0 and entry.state == "open":
            changed = dataclasses.replace(entry, missing=0, state="closed", closed_us=now_us, updated_us=now_us)
        elif missing != entry.missing:
            changed = dataclasses.replace(entry, missing=missing, updated_us=now_us)
        else:
            return None
        self.entries[entry.key] = changed
        return changed

    def due(self, now_us: int) -> list[Entry]:
        return [e for e in self.active() if e.state == "open" and e.next_attempt_us <= now_us]

    def attempted(self, entry: Entry, job: Fill, now_us: int) -> Entry:
        """The entry after a REST fill of it ran."""
        entry = self.entries.get(entry.key, entry)
        attempts = entry.attempts + 1
        detail = f"attempt {attempts}: found {job.found} of {job.size} ids over REST"
        if job.error:
            detail += f" ({job.error})"
        beyond_reach = entry.before_us <= now_us - int(self.policy.gone_min_age_s * 1e6)
        if job.exhausted and not job.complete and beyond_reach:
            gone = max(entry.missing - job.found, 0)
            changed = dataclasses.replace(
                entry, attempts=attempts, state="unrecoverable", missing=gone, closed_us=now_us, updated_us=now_us,
                detail=detail + f"; OKX serves nothing below id {job.after}: {gone} ids beyond its history")
        elif attempts >= self.policy.max_attempts and not job.complete:
            changed = dataclasses.replace(entry, attempts=attempts, state="unrecoverable", closed_us=now_us,
                                          updated_us=now_us, detail=detail + f"; gave up after {attempts} attempts")
        else:
            backoff = min(self.policy.retry_min_s * 2 ** (attempts - 1), self.policy.retry_max_s)
            changed = dataclasses.replace(entry, attempts=attempts, detail=detail, updated_us=now_us,
                                          next_attempt_us=now_us + int(backoff * 1e6))
        self.entries[entry.key] = changed
        return changed


# -- QuestDB ------------------------------------------------------------------------------
def _symbol(symbol: str) -> str:
    # /exec takes no bound values: only instrument ids of the strict OKX shape reach SQL.
    if not SYMBOL_PATTERN.match(symbol):
        raise ValueError(f"not an instrument id: {symbol!r}")
    return symbol


def _ts(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _us(value: str | None) -> int | None:
    if value is None:
        return None
    moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Store:
    """The audit's queries, over QuestDB's HTTP /exec."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def last_ids(self, symbols: Iterable[str]) -> dict[str, int]:
        """The highest stored trade id per symbol: where the last run stopped."""
        names = ",".join(_sql_text(_symbol(s)) for s in symbols)
        rows = query(self.base_url, f"SELECT symbol, max(trade_id) AS last_id FROM {TRADES_TABLE} "
                                    f"WHERE symbol IN ({names})")
        return {row["symbol"]: row["last_id"] for row in rows if row["last_id"] is not None}

    def oldest(self, symbol: str) -> tuple[int, int, int] | None:
        """(trade id, exchange time µs, fills) of the oldest stored row of ``symbol``."""
        rows = query(self.base_url, f"SELECT trade_id, timestamp, fills FROM {TRADES_TABLE} "
                                    f"WHERE symbol = {_sql_text(_symbol(symbol))} LIMIT 1")
        return (rows[0]["trade_id"], _us(rows[0]["timestamp"]), rows[0]["fills"]) if rows else None

    def newest(self, symbol: str) -> int | None:
        """Exchange time of the newest stored row of ``symbol`` (µs), None without rows."""
        rows = query(self.base_url, f"SELECT max(timestamp) AS newest FROM {TRADES_TABLE} "
                                    f"WHERE symbol = {_sql_text(_symbol(symbol))}")
        return _us(rows[0]["newest"]) if rows else None

    def candidates(self, symbol: str, since_us: int | None) -> list[Hole]:
        """Holes between rows in storage (time) order, a superset of the true holes: one
        pass over the designated timestamp, no sort. Rows of one millisecond may be stored
        out of id order; ``exact`` sorts out each candidate's small window."""
        where = f"symbol = {_sql_text(_symbol(symbol))}"
        if since_us is not None:
            where += f" AND timestamp >= {_sql_text(_ts(since_us))}"
        return self._holes(symbol, where, "timestamp")

    def exact(self, symbol: str, after_us: int, before_us: int) -> list[Hole]:
        """The true holes among the rows stored between two exchange times (inclusive)."""
        where = (f"symbol = {_sql_text(_symbol(symbol))} AND timestamp >= {_sql_text(_ts(after_us))} "
                 f"AND timestamp <= {_sql_text(_ts(before_us))}")
        return self._holes(symbol, where, "trade_id")

    def _holes(self, symbol: str, where: str, order: str) -> list[Hole]:
        rows = query(self.base_url, f"""
            SELECT prev_id + 1 AS first_id, trade_id - fills AS last_id, prev_ts, timestamp, received_at FROM (
                SELECT trade_id, fills, timestamp, received_at,
                    lag(trade_id) OVER (ORDER BY {order}) AS prev_id,
                    lag(timestamp) OVER (ORDER BY {order}) AS prev_ts
                FROM {TRADES_TABLE} WHERE {where}
            ) WHERE trade_id - fills > prev_id""")
        return [Hole(symbol, row["first_id"], row["last_id"], _us(row["prev_ts"]), _us(row["timestamp"]),
                     _us(row["received_at"]) or 0) for row in rows]

    def load(self, symbols: Iterable[str] | None = None) -> list[Entry]:
        """The ledger's open and unrecoverable holes (DEDUP leaves the latest row per hole),
        of ``symbols`` or of every symbol."""
        where = "state != 'closed'"
        if symbols is not None:
            where += f" AND symbol IN ({','.join(_sql_text(_symbol(s)) for s in symbols)})"
        rows = query(self.base_url, f"SELECT * FROM {HOLES_TABLE} WHERE {where}")
        # Rows written by hand or by an older version may lack times: 0 (long ago) then.
        return [Entry(symbol=r["symbol"], first_id=r["first_id"], last_id=r["last_id"],
                      after_us=_us(r["after_time"]) or 0, before_us=_us(r["before_time"]) or 0,
                      found_us=_us(r["found_at"]) or 0, missing=r["missing"] or 0,
                      state=r["state"], attempts=r["attempts"] or 0, detail=r["detail"] or "",
                      updated_us=_us(r["updated_at"]) or 0, next_attempt_us=_us(r["next_attempt_at"]) or 0,
                      closed_us=_us(r["closed_at"])) for r in rows]

    def save(self, entries: Iterable[Entry]) -> None:
        values = [
            f"({_sql_text(e.symbol)}, {e.first_id}, {e.last_id}, {e.missing}, {_sql_text(e.state)}, {e.attempts}, "
            f"{_sql_text(e.detail[:1000])}, {_sql_text(_ts(e.after_us))}, {_sql_text(_ts(e.before_us))}, "
            f"{_sql_text(_ts(e.updated_us))}, {_sql_text(_ts(e.next_attempt_us))}, "
            f"{'NULL' if e.closed_us is None else _sql_text(_ts(e.closed_us))}, {_sql_text(_ts(e.found_us))})"
            for e in entries
        ]
        for start in range(0, len(values), 50):  # /exec takes the statement in its URL
            query(self.base_url, f"INSERT INTO {HOLES_TABLE} (symbol, first_id, last_id, missing, state, attempts, "
                                 "detail, after_time, before_time, updated_at, next_attempt_at, closed_at, found_at) "
                                 "VALUES " + ", ".join(values[start:start + 50]))


# -- the loop -----------------------------------------------------------------------------
class Auditor:
    """Every ``interval_s``: find new holes, re-check the known ones, queue fills of the
    due ones (unless a live fill already covers them), publish the counts."""

    # Each pass re-reads this much before the last one's end: rows stored late near the
    # edge (out of order within a millisecond, a slow consumer) are looked at again.
    OVERLAP_US = 60_000_000

    def __init__(self, store: Store, symbols: tuple[str, ...] | Callable[[], tuple[str, ...]], policy: Policy,
                 submit: Callable[[Fill], object], pending: Callable[[str, int, int], bool],
                 interval_s: float = 30.0) -> None:
        self.store = store
        # The symbols followed now (they change with SYMBOLS patterns).
        self.symbols = symbols if callable(symbols) else (lambda: tuple(symbols))
        self.ledger = Ledger(policy)
        self.submit = submit
        self.pending = pending
        self.interval_s = interval_s
        self.error = ""
        self._failing_since = 0.0
        self._loaded = False
        self._since: dict[str, int | None] = {}
        self._filling: set[tuple] = set()
        self._lock = threading.Lock()  # the ledger, between this loop and fill callbacks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)

    def start(self) -> Auditor:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def problems(self) -> list[str]:
        if self._failing_since and time.monotonic() - self._failing_since > 2 * self.interval_s:
            return [f"audit: failing for {time.monotonic() - self._failing_since:.0f} s ({self.error})"]
        return []

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.symbols():  # the feed has not resolved SYMBOLS yet
                self._stop.wait(0.5)
                continue
            try:
                self.audit()
                self._failing_since, self.error = 0.0, ""
            except (OSError, SchemaError, ValueError, KeyError) as exc:
                self._failing_since = self._failing_since or time.monotonic()
                self.error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("audit pass failed", extra={"error": self.error})
            self._stop.wait(self.interval_s)

    def audit(self) -> None:
        """One pass over every symbol."""
        started = time.monotonic()
        if not self._loaded:
            entries = self.store.load()
            with self._lock:
                self.ledger = Ledger(self.ledger.policy, entries)
            self._loaded = True
            if entries:
                log.info("ledger loaded", extra={"open": sum(e.state == "open" for e in entries),
                                                 "unrecoverable": sum(e.state != "open" for e in entries)})
        for symbol in self.symbols():
            self._audit_symbol(symbol)
        self._fill_due()
        metrics.AUDIT_PASSES.inc()
        metrics.AUDIT_SECONDS.set(time.monotonic() - started)

    def _audit_symbol(self, symbol: str) -> None:
        now_us = time.time_ns() // 1000
        settled_before = now_us - int(self.ledger.policy.settle_s * 1e6)
        newest = self.store.newest(symbol)
        candidates = self.store.candidates(symbol, self._since.get(symbol))
        holes = [h for c in candidates for h in self.store.exact(symbol, c.after_us, c.before_us)]
        with self._lock:
            new = self.ledger.found(holes, now_us)
            new_keys = {e.key for e in new}
            changed = []
            for entry in self.ledger.active(symbol):
                if entry.key in new_keys or (entry.state != "open" and entry.updated_us < now_us - RECHECK_GONE_US):
                    continue
                still = sum(max(0, min(h.last_id, entry.last_id) - max(h.first_id, entry.first_id) + 1)
                            for h in self.store.exact(symbol, entry.after_us, entry.before_us))
                if (changed_entry := self.ledger.rechecked(entry, still, now_us)) is not None:
                    changed.append(changed_entry)
            missing, gone = self.ledger.missing(symbol), self.ledger.missing(symbol, "unrecoverable")
        self.store.save(new + changed)
        for entry in new:
            log.warning("hole found in the stored trades", extra=_describe(entry))
        for entry in changed:
            if entry.state == "closed":
                log.info("hole closed", extra=_describe(entry))
        metrics.TRADES_MISSING.labels(symbol).set(missing)
        metrics.TRADES_UNRECOVERABLE.labels(symbol).set(gone)
        # A new hole can only open above the newest row (ids grow with time), and one still
        # settling must be looked at again: the next pass starts before both.
        marks = [h.after_us for h in holes if h.settled_us > settled_before] + ([newest] if newest else [])
        if marks:
            self._since[symbol] = max(0, min(marks) - self.OVERLAP_US)

    def _fill_due(self) -> None:
        now_us = time.time_ns() // 1000
        followed = set(self.symbols())  # the ledger also holds holes of symbols no longer followed
        with self._lock:
            due = [e for e in self.ledger.due(now_us) if e.key not in self._filling and e.symbol in followed]
        for entry in due:
            if self.pending(entry.symbol, entry.first_id, entry.last_id):
                continue  # a live fill is on it already
            self._filling.add(entry.key)
            log.info("filling hole over REST", extra=_describe(entry))
            self.submit(Fill(entry.symbol, entry.first_id, entry.last_id, Priority.HOLE, max_failures=3,
                             on_done=lambda job, entry=entry: self._attempted(entry, job)))

    def _attempted(self, entry: Entry, job: Fill) -> None:
        with self._lock:
            changed = self.ledger.attempted(entry, job, time.time_ns() // 1000)
            self._filling.discard(entry.key)
        try:
            self.store.save([changed])
        except (OSError, SchemaError) as exc:  # the next pass re-derives what matters from the store
            log.warning("could not write the ledger", extra={"error": str(exc)[:200]})
        level = logging.ERROR if changed.state == "unrecoverable" else logging.INFO
        log.log(level, "hole fill attempted", extra=_describe(changed))


def _describe(entry: Entry) -> dict:
    return {"symbol": entry.symbol, "first_id": entry.first_id, "last_id": entry.last_id, "missing": entry.missing,
            "state": entry.state, "attempts": entry.attempts, "detail": entry.detail}

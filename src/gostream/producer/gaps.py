"""Trade-id continuity per symbol, as pure bookkeeping.

OKX trade ids are consecutive per instrument. A trade on the ``trades`` channel stands
for ``count`` fills whose ids end at its ``tradeId``. Anything at or below the highest id
seen is a repeat (the trade OKX re-sends on subscribe); anything that skips ids opens a
gap to backfill over REST. Ids far below the highest seen are not repeats but another
feed (a different exchange behind the same URL, a reset): they are taken, never skipped,
and reported as a regression.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from gostream.common.trade import Trade


@dataclass(frozen=True)
class Gap:
    symbol: str
    first_id: int  # inclusive
    last_id: int  # inclusive

    @property
    def size(self) -> int:
        return self.last_id - self.first_id + 1


# How far below the highest id a trade may be and still count as a repeat. OKX re-sends
# only its latest trade (the latest aggregated push on `trades`), whose id is the highest
# seen: a few ids of slack. Further below is another feed: with a window of 1,000 a quiet
# symbol's whole feed after an exchange reset was skipped as repeats (bench P8).
REPEAT_WINDOW = 10


@dataclass(frozen=True)
class Regression:
    """Trade ids of ``symbol`` went back from ``from_id`` to ``to_id``."""

    symbol: str
    from_id: int
    to_id: int


@dataclass
class Continuity:
    last_id: dict[str, int] = field(default_factory=dict)
    regressions: list[Regression] = field(default_factory=list)

    def observe(self, trade: Trade) -> tuple[bool, Gap | None]:
        """(is_new, gap_before_it). A repeat is not new and opens no gap; a trade far
        below the highest id restarts the count there (see ``regressions``)."""
        last = self.last_id.get(trade.symbol)
        if last is not None and trade.trade_id <= last:
            if last - trade.trade_id <= REPEAT_WINDOW:
                return False, None
            self.regressions.append(Regression(trade.symbol, last, trade.trade_id))
            self.last_id[trade.symbol] = trade.trade_id
            return True, None
        self.last_id[trade.symbol] = trade.trade_id
        first_of_trade = trade.trade_id - trade.count + 1
        if last is not None and first_of_trade > last + 1:
            return True, Gap(trade.symbol, last + 1, first_of_trade - 1)
        return True, None


class Lost:
    """Trades that never reached Kafka (buffer full, Kafka down), as one id range per
    symbol, to fetch again over REST once Kafka is back. Refetching a trade that did
    arrive is harmless (DEDUP). Thread-safe: the Kafka client reports failures from its
    own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ranges: dict[str, tuple[int, int]] = {}

    def add(self, trade: Trade) -> None:
        first = trade.trade_id - trade.count + 1
        with self._lock:
            lo, hi = self._ranges.get(trade.symbol, (first, trade.trade_id))
            self._ranges[trade.symbol] = (min(lo, first), max(hi, trade.trade_id))

    def take(self) -> list[Gap]:
        with self._lock:
            gaps = [Gap(symbol, lo, hi) for symbol, (lo, hi) in sorted(self._ranges.items())]
            self._ranges.clear()
        return gaps

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._ranges)

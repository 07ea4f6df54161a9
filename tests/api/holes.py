"""Trades with holes and hole-ledger rows written straight into QuestDB (ILP/HTTP, as the
consumer and the producer's audit write them), and completeness worked out here from what
was written, by listing ids (the yardstick /completeness is compared with)."""

from __future__ import annotations

from dataclasses import dataclass

from questdb import Sender, TimestampMicros, TimestampNanos

from gostream.common.schema import HOLES_TABLE, TRADES_TABLE
from tests.conftest import TEST_PORTS, sql, wait_for

US = 1_000_000


@dataclass(frozen=True)
class Row:
    """One stored trade row: it covers ids trade_id - fills + 1 .. trade_id."""

    trade_id: int
    ms: int  # exchange time, epoch ms
    fills: int = 1
    price: float = 30_000.0


@dataclass(frozen=True)
class LedgerRow:
    first_id: int
    last_id: int
    state: str
    found_ms: int
    attempts: int = 0
    missing: int | None = None  # default: last_id - first_id + 1

    @property
    def ids(self) -> int:
        return self.last_id - self.first_id + 1 if self.missing is None else self.missing


def _sender() -> Sender:
    return Sender.from_conf(f"http::addr=127.0.0.1:{TEST_PORTS.questdb_http};auto_flush=off;")


def write_trades(symbol: str, rows: list[Row]) -> None:
    """Write the rows in one transaction and wait until QuestDB shows all of the symbol's rows."""
    with _sender() as sender:
        for i, row in enumerate(rows):
            sender.row(TRADES_TABLE, symbols={"symbol": symbol, "side": "buy" if i % 2 else "sell"},
                       columns={"trade_id": row.trade_id, "price": row.price + i % 7, "size": 0.01,
                                "fills": row.fills, "received_at": TimestampMicros(row.ms * 1000 + 900)},
                       at=TimestampNanos(row.ms * 1_000_000))
        sender.flush(transactional=True)


def wait_stored(symbol: str, count: int) -> None:
    wait_for(lambda: sql(f"SELECT count() n FROM {TRADES_TABLE} WHERE symbol = '{symbol}'")[0]["n"] == count,
             60, message=f"{count} rows of {symbol} in QuestDB")


def write_ledger(symbol: str, rows: list[LedgerRow], updated_ms: int) -> None:
    """Ledger rows as the audit writes them (a row with the key of an earlier one replaces
    it), then wait until QuestDB shows each row's state."""
    with _sender() as sender:
        for row in rows:
            sender.row(HOLES_TABLE, symbols={"symbol": symbol, "state": row.state},
                       columns={"first_id": row.first_id, "last_id": row.last_id, "missing": row.ids,
                                "attempts": row.attempts, "detail": f"test {row.state}",
                                "updated_at": TimestampMicros(updated_ms * 1000)},
                       at=TimestampNanos(row.found_ms * 1_000_000))
        sender.flush(transactional=True)
    for row in rows:
        key = f"symbol = '{symbol}' AND first_id = {row.first_id} AND found_at = {row.found_ms * 1000}"
        wait_for(lambda: [r["state"] for r in sql(f"SELECT state FROM {HOLES_TABLE} WHERE {key}")] == [row.state],
                 60, message=f"ledger row {row} of {symbol} in QuestDB")


def expected_completeness(symbol: str, rows: list[Row], ledger: list[LedgerRow], start: int | None = None,
                          end: int | None = None, max_holes: int = 100) -> dict:
    """What /completeness must answer, from the rows written: the ids covered are listed one
    by one, the missing ones are those between the lowest and the highest that no row
    covers, and each run of them is a hole."""
    inside = [r for r in rows if (start is None or r.ms >= start * 1000) and (end is None or r.ms < end * 1000)]
    answer = {"symbol": symbol, "from": start, "to": end}
    if not inside:
        return {**answer, "first_id": 0, "last_id": 0, "expected": 0, "stored": 0, "missing": 0, "complete": True,
                "percent": 100.0, "holes": [], "holes_truncated": False,
                "ledger": {"open": 0, "unrecoverable": 0, "unrecoverable_missing": 0}}
    covered = {i for r in inside for i in range(r.trade_id - r.fills + 1, r.trade_id + 1)}
    first, last = min(covered), max(covered)
    gone = [i for i in range(first, last + 1) if i not in covered]
    runs: list[list[int]] = []
    for i in gone:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    # The latest ledger row per key (found_at, first_id), as QuestDB's DEDUP keeps it.
    latest: dict[tuple[int, int], LedgerRow] = {}
    for row in ledger:
        latest[(row.found_ms, row.first_id)] = row
    overlapping = [r for r in latest.values() if r.first_id <= last and r.last_id >= first]
    holes = []
    for run in runs[:max_holes]:
        before = next(r for r in inside if r.trade_id == run[0] - 1)  # the row ending just before
        # The row starting just after (of two starting there, the one with the lower id).
        after = min((r for r in inside if r.trade_id - r.fills + 1 == run[-1] + 1), key=lambda r: r.trade_id)
        covering = [r for r in overlapping if r.first_id <= run[0] and run[-1] <= r.last_id]
        newest = max(covering, key=lambda r: r.found_ms, default=None)
        holes.append({"first_id": run[0], "last_id": run[-1], "missing": len(run), "after_time": before.ms / 1000,
                      "before_time": after.ms / 1000, "state": newest.state if newest else "found",
                      "attempts": newest.attempts if newest else 0})
    expected = last - first + 1
    stored = expected - len(gone)
    return {**answer, "first_id": first, "last_id": last, "expected": expected, "stored": stored,
            "missing": len(gone), "complete": not gone, "percent": stored * 10000 // expected / 100,
            "holes": holes, "holes_truncated": len(runs) > max_holes,
            "ledger": {"open": sum(r.state == "open" for r in overlapping),
                       "unrecoverable": sum(r.state == "unrecoverable" for r in overlapping),
                       "unrecoverable_missing": sum(r.ids for r in overlapping if r.state == "unrecoverable")}}

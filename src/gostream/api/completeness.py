"""/completeness: how many of a symbol's trade ids the store holds over a time range, the
holes (runs of missing ids) and what the producer's hole ledger says about them.

OKX trade ids are consecutive per instrument; a stored row covers the ids
``trade_id - fills + 1 .. trade_id`` (``fills`` > 1 on the aggregated channel). Over the
rows whose exchange time is in [from, to), ordered by id, a hole is the ids between a row
and the next one, when they neither touch nor overlap. The ids expected are those from the
lowest covered id to the highest, so a hole at the edge of the range (before its first row,
after its last) belongs to the neighbouring range, not this one.

Cost: one pass over the range's rows in the table's own (time) order, which QuestDB streams
through the window function without sorting; a second pass only to list holes when there
are some. Trade ids normally rise with time, and then the time order is the id order and
that pass is exact; if any row's id is not above the previous row's (a backfilled fill in
the millisecond of an aggregated row, say), the same passes run ordered by id instead,
which makes QuestDB sort the rows (about four times the cost).
"""

from __future__ import annotations

from gostream.api import queries as q
from gostream.api.db import Database
from gostream.api.validation import MAX_EPOCH_S

US = 1_000_000
MAX_HOLES = 100  # holes listed, oldest first
LEDGER_ROWS = 1000  # ledger rows read to match listed holes to their state


def percent(stored: int, expected: int) -> float:
    """stored / expected as a percentage with two decimals, rounded down (so 100.0 only
    when nothing is missing); 100.0 for an empty range."""
    if expected <= 0:
        return 100.0
    return (stored * 10_000 // expected) / 100


def _seconds(us: int | None) -> float | int | None:
    if us is None:
        return None
    return us // US if us % US == 0 else us / US


def completeness(db: Database, symbol: str, start: int | None, end: int | None, max_holes: int = MAX_HOLES) -> dict:
    """The /completeness answer for trades of ``symbol`` whose time is in [start, end)
    (epoch s; None: unbounded)."""
    lo = 0 if start is None else start * US
    hi = (MAX_EPOCH_S + 1) * US if end is None else end * US
    params = {"symbol": symbol, "lo": lo, "hi": hi}
    order = "timestamp"
    n, first_id, last_id, missing, holes, unordered = db.query(q.COMPLETENESS[order], params)[0]
    if unordered:
        order = "trade_id"
        n, first_id, last_id, missing, holes, unordered = db.query(q.COMPLETENESS[order], params)[0]
    answer = {"symbol": symbol, "from": start, "to": end}
    if not n:
        return {**answer, "first_id": 0, "last_id": 0, "expected": 0, "stored": 0, "missing": 0, "complete": True,
                "percent": 100.0, "holes": [], "holes_truncated": False,
                "ledger": {"open": 0, "unrecoverable": 0, "unrecoverable_missing": 0}}
    missing = int(missing or 0)
    holes = int(holes or 0)
    expected = last_id - first_id + 1
    stored = expected - missing
    listed = []
    if holes:
        rows = db.query(q.HOLES[order], {**params, "limit": max_holes})
        listed = [{"first_id": a, "last_id": b, "missing": b - a + 1, "after_time": _seconds(after_us),
                   "before_time": _seconds(before_us)} for a, b, after_us, before_us in rows]
    ledger = {"open": 0, "unrecoverable": 0, "unrecoverable_missing": 0}
    id_range = {"symbol": symbol, "first": first_id, "last": last_id}
    for state, count, state_missing in db.query(q.LEDGER_COUNTS, id_range):
        if state == "open":
            ledger["open"] = count
        elif state == "unrecoverable":
            ledger["unrecoverable"] = count
            ledger["unrecoverable_missing"] = int(state_missing or 0)
    if listed:
        _states(db, symbol, listed)
    return {**answer, "first_id": first_id, "last_id": last_id, "expected": expected, "stored": stored,
            "missing": missing, "complete": missing == 0, "percent": percent(stored, expected),
            "holes": listed, "holes_truncated": holes > len(listed), "ledger": ledger}


def _states(db: Database, symbol: str, listed: list[dict]) -> None:
    """Each listed hole gets the state and attempts of the newest ledger row covering it
    whole (a hole partly filled since it was found still lies inside its ledger row), or
    "found" with 0 attempts when the ledger has no such row (yet)."""
    rows = db.query(q.LEDGER_ROWS, {"symbol": symbol, "first": listed[0]["first_id"], "last": listed[-1]["last_id"],
                                    "limit": LEDGER_ROWS})
    for hole in listed:
        found = next((r for r in rows if r[0] <= hole["first_id"] and hole["last_id"] <= r[1]), None)
        hole["state"] = "found" if found is None else found[2]
        hole["attempts"] = 0 if found is None else int(found[3] or 0)

"""/completeness against the session's QuestDB: trades written with known holes (aggregated
rows, overlaps, ids out of time order) and hole-ledger rows, every number compared with what
tests.api.holes works out from the rows written."""

from __future__ import annotations

import pytest

from tests.api.holes import LedgerRow, Row, expected_completeness, wait_stored, write_ledger, write_trades
from tests.api.pipeline import get
from tests.conftest import TEST_PORTS, unique

PORT = TEST_PORTS.api
T0 = 1_706_745_600  # 2024-02-01 00:00:00 UTC
MS = T0 * 1000


def at(seconds: float) -> int:
    return MS + round(seconds * 1000)


# ids 1000 .. 1049: five holes (3 + 9 + 4 + 4 + 1 = 21 ids), an aggregated row overlapping a
# backfilled single fill, aggregated rows next to holes.
ROWS = [
    *(Row(1000 + k, at(k)) for k in range(10)),  # 1000..1009
    # hole 1010..1012
    Row(1015, at(12.5), fills=3),  # covers 1013..1015
    Row(1016, at(13)),
    Row(1017, at(19.999)),  # a single fill, backfilled ...
    Row(1020, at(20), fills=4),  # ... that the aggregated row 1017..1020 also covers: no hole
    # hole 1021..1029
    Row(1030, at(30)),
    # hole 1031..1034
    Row(1035, at(35)),
    # hole 1036..1039
    Row(1042, at(42), fills=3),  # covers 1040..1042
    # hole 1043
    *(Row(1044 + k, at(44 + k)) for k in range(6)),  # 1044..1049
]


def ledger_rows() -> list[LedgerRow]:
    return [
        LedgerRow(1010, 1012, "closed", at(50)),  # an older row over the same ids ...
        LedgerRow(1010, 1012, "open", at(100), attempts=2),  # ... the newest covering row counts
        LedgerRow(1021, 1029, "open", at(101), attempts=1),
        LedgerRow(1031, 1039, "unrecoverable", at(102), attempts=5),  # 1035 came back since: covers both halves
        LedgerRow(1000, 1001, "closed", at(90)),  # a hole filled long ago
        LedgerRow(5000, 5010, "open", at(103)),  # outside the id range
    ]


@pytest.fixture(scope="module")
def holed(api) -> tuple[str, list[LedgerRow]]:
    """A symbol with ROWS, and its ledger (one row re-written with a new state, as the audit
    does), plus another symbol's ledger row over the same ids."""
    symbol = unique("CMP") + "-USDT"
    other = unique("CMO") + "-USDT"
    write_trades(symbol, ROWS)
    wait_stored(symbol, len(ROWS))
    ledger = ledger_rows()
    write_ledger(symbol, ledger, updated_ms=at(200))
    rewritten = LedgerRow(1021, 1029, "unrecoverable", at(101), attempts=4)  # same key: replaces the open row
    write_ledger(symbol, [rewritten], updated_ms=at(300))
    write_ledger(other, [LedgerRow(1010, 1012, "unrecoverable", at(100))], updated_ms=at(200))
    return symbol, ledger + [rewritten]


def completeness(query: str) -> dict:
    status, body = get(PORT, f"/completeness?{query}")
    assert status == 200, body
    return body


def test_holes_overlaps_and_ledger_over_the_whole_history(holed):
    symbol, ledger = holed
    got = completeness(f"symbol={symbol}")
    want = expected_completeness(symbol, ROWS, ledger)
    assert got == want
    # The numbers worked out above, by hand, for the reader.
    assert (got["first_id"], got["last_id"], got["expected"], got["missing"], got["stored"]) == (1000, 1049, 50, 21, 29)
    assert got["percent"] == 58.0 and got["complete"] is False
    assert [(h["first_id"], h["last_id"], h["state"], h["attempts"]) for h in got["holes"]] == [
        (1010, 1012, "open", 2), (1021, 1029, "unrecoverable", 4), (1031, 1034, "unrecoverable", 5),
        (1036, 1039, "unrecoverable", 5), (1043, 1043, "found", 0)]
    assert got["holes"][0]["after_time"] == T0 + 9 and got["holes"][0]["before_time"] == T0 + 12.5
    assert got["ledger"] == {"open": 1, "unrecoverable": 2, "unrecoverable_missing": 18}


@pytest.mark.parametrize("start,end", [
    (T0 + 11, T0 + 36),  # cuts the first hole off (before its first row) and the last ones (after its last)
    (T0 + 20, T0 + 31),  # starts at the aggregated row: its first id, 1017, is the range's first
    (T0 + 12, T0 + 13),  # one aggregated row: complete
    (T0, T0 + 10),  # complete
    (T0 + 30, None),
    (None, T0 + 30),
    (0, 4_102_444_800),
])
def test_the_time_range_bounds_the_ids(holed, start, end):
    symbol, ledger = holed
    query = f"symbol={symbol}" + (f"&from={start}" if start is not None else "") + (f"&to={end}" if end is not None else "")
    want = expected_completeness(symbol, ROWS, ledger, start, end)
    assert want["expected"] > 0
    assert completeness(query) == want


def test_ranges_without_trades_are_complete_zeros(holed):
    symbol, ledger = holed
    for start, end in ((T0 + 10, T0 + 10), (T0 + 1000, T0 + 2000), (0, T0)):
        got = completeness(f"symbol={symbol}&from={start}&to={end}")
        assert got == expected_completeness(symbol, ROWS, ledger, start, end)
        assert got["expected"] == 0 and got["complete"] is True and got["holes"] == [] and got["percent"] == 100.0
    nobody = unique("NOB") + "-USDT"
    assert completeness(f"symbol={nobody}") == expected_completeness(nobody, [], [])


def test_ids_out_of_time_order_are_counted_by_id(api):
    """A fill stored with a later time than a higher id (and an overlap the same way round):
    ordered by time the ids would show a hole that is not there."""
    symbol = unique("CMU") + "-USDT"
    rows = [Row(2000, at(0)), Row(2002, at(1)), Row(2001, at(1.5)),  # 2001 after 2002 in time
            Row(2005, at(2)),  # hole 2003..2004
            Row(2008, at(3), fills=3), Row(2006, at(3.5)),  # 2006..2008 and again 2006: no hole
            Row(2012, at(4)), Row(2011, at(4), fills=2)]  # one millisecond, 2010..2012: hole 2009
    write_trades(symbol, rows)
    wait_stored(symbol, len(rows))
    ledger = [LedgerRow(2003, 2004, "open", at(10), attempts=1)]
    write_ledger(symbol, ledger, updated_ms=at(11))
    got = completeness(f"symbol={symbol}")
    assert got == expected_completeness(symbol, rows, ledger)
    assert got["missing"] == 3 and [(h["first_id"], h["state"]) for h in got["holes"]] == [(2003, "open"), (2009, "found")]
    assert got["holes"][0]["after_time"] == T0 + 1  # 2002's row (2001's is later in time, but lower in id)


def test_at_most_a_hundred_holes_are_listed(api):
    symbol = unique("CMT") + "-USDT"
    rows = [Row(3000 + 2 * k, at(k)) for k in range(106)]  # every other id: 105 holes of one
    write_trades(symbol, rows)
    wait_stored(symbol, len(rows))
    got = completeness(f"symbol={symbol}")
    assert got == expected_completeness(symbol, rows, [])
    assert got["missing"] == 105 and len(got["holes"]) == 100 and got["holes_truncated"] is True
    assert got["holes"][-1]["first_id"] == 3199 and got["percent"] == 50.23
    assert completeness(f"symbol={symbol}&to={T0 + 101}")["holes_truncated"] is False  # 100 holes exactly


@pytest.mark.parametrize("path,mentions", [
    ("/completeness?symbol=btc-usdt", "symbol"),
    ("/completeness?symbol=BTC-USDT&symbol=ETH-USDT", "symbol"),
    ("/completeness?from=abc", "from"),
    ("/completeness?from=-1", "from"),
    ("/completeness?from=1.5", "from"),
    ("/completeness?to=99999999999", "to"),
    ("/completeness?to=", "to"),
    ("/completeness?from=200&to=100", "after"),
    ("/completeness?interval=1m", "unknown parameter"),
    ("/completeness?limit=5", "unknown parameter"),
])
def test_bad_parameters_get_400(api, path, mentions):
    status, body = get(PORT, path)
    assert status == 400, body
    assert set(body) == {"error"} and mentions in body["error"], body

"""The completeness audit: the ledger's decisions on their own, then the queries and a
whole pass against a real QuestDB."""


import pytest

from gostream.common.schema import ensure_schema, query
from gostream.producer.audit import Auditor, Hole, Ledger, Policy, Store
from gostream.producer.rest import Fill, Priority
from tests.conftest import TEST_PORTS, sql, unique, wait_for

S = 1_000_000  # µs
NOW = 1_800_000_000 * S


def hole(first, last, settled=NOW - 3600 * S, symbol="BTC-USDT", before=NOW - 3600 * S):
    return Hole(symbol, first, last, after_us=before - S, before_us=before, settled_us=settled)


def job(entry, found=0, exhausted=False, error=None):
    fill = Fill(entry.symbol, entry.first_id, entry.last_id, Priority.HOLE, exhausted=exhausted, error=error)
    fill.found = found
    return fill


# -- the ledger, pure --------------------------------------------------------------------
def test_a_settled_hole_becomes_an_open_entry_once():
    ledger = Ledger(Policy(settle_s=30))
    (entry,) = ledger.found([hole(10, 14)], NOW)
    assert (entry.first_id, entry.last_id, entry.missing, entry.state) == (10, 14, 5, "open")
    assert ledger.found([hole(10, 14), hole(11, 12)], NOW + S) == []  # known, or inside a known one
    assert [e.first_id for e in ledger.due(NOW)] == [10]


def test_a_hole_whose_upper_trade_just_arrived_waits_for_the_live_fill():
    ledger = Ledger(Policy(settle_s=30))
    assert ledger.found([hole(10, 14, settled=NOW - 10 * S)], NOW) == []
    assert len(ledger.found([hole(10, 14, settled=NOW - 10 * S)], NOW + 25 * S)) == 1


def test_recheck_counts_down_and_closes():
    ledger = Ledger(Policy())
    (entry,) = ledger.found([hole(10, 19)], NOW)
    shrunk = ledger.rechecked(entry, 4, NOW + S)
    assert (shrunk.missing, shrunk.state) == (4, "open")
    assert ledger.rechecked(shrunk, 4, NOW + 2 * S) is None  # nothing changed: nothing to write
    closed = ledger.rechecked(shrunk, 0, NOW + 3 * S)
    assert (closed.state, closed.closed_us, closed.missing) == ("closed", NOW + 3 * S, 0)
    assert ledger.active() == [] and ledger.missing("BTC-USDT") == 0


def test_failed_fills_back_off_and_give_up_after_max_attempts():
    ledger = Ledger(Policy(retry_min_s=5, retry_max_s=20, max_attempts=4))
    (entry,) = ledger.found([hole(10, 19)], NOW)
    waits = []
    for attempt in range(1, 4):
        entry = ledger.attempted(entry, job(entry, error="HTTP 503"), NOW)
        assert (entry.attempts, entry.state) == (attempt, "open")
        waits.append((entry.next_attempt_us - NOW) // S)
    assert waits == [5, 10, 20]
    assert ledger.due(NOW + 19 * S) == [] and ledger.due(NOW + 20 * S) == [entry]
    entry = ledger.attempted(entry, job(entry, error="HTTP 503"), NOW)
    assert entry.state == "unrecoverable" and "gave up after 4 attempts" in entry.detail
    assert ledger.missing("BTC-USDT", "unrecoverable") == 10 and ledger.due(NOW + 3600 * S) == []


def test_ids_okx_no_longer_serves_are_unrecoverable_with_their_count():
    ledger = Ledger(Policy(gone_min_age_s=600))
    (young,) = ledger.found([hole(10, 19, settled=NOW - 60 * S, before=NOW - 60 * S)], NOW)
    young = ledger.attempted(young, job(young, exhausted=True), NOW)
    assert young.state == "open"  # a young hole's history may only be lagging: retried
    (entry,) = ledger.found([hole(30, 39)], NOW)
    entry = ledger.attempted(entry, job(entry, found=3, exhausted=True), NOW)
    assert (entry.state, entry.missing) == ("unrecoverable", 7)
    assert "7 ids beyond its history" in entry.detail
    assert ledger.found([hole(30, 36)], NOW + S) == []  # found again, never retried


def test_a_hole_too_large_to_be_missed_trades_is_not_fetched():
    ledger = Ledger(Policy(max_ids=1000))
    (entry,) = ledger.found([hole(10, 5000)], NOW)
    assert entry.state == "unrecoverable" and "another source" in entry.detail
    assert ledger.due(NOW) == []


# -- against QuestDB ----------------------------------------------------------------------
URL = f"http://127.0.0.1:{TEST_PORTS.questdb_http}"
T0 = 1_700_000_000_000  # ms


def write(symbol: str, rows: list[tuple[int, int, int]]) -> None:
    """Trades as (trade_id, fills, exchange ms)."""
    values = ", ".join(
        f"('{symbol}', 'buy', {trade_id}, 1.0, 1.0, {fills}, now(), cast({ts_ms * 1000} as timestamp))"
        for trade_id, fills, ts_ms in rows
    )
    query(URL, f"INSERT INTO trades (symbol, side, trade_id, price, size, fills, received_at, timestamp) VALUES {values}")


@pytest.fixture
def store(questdb):
    ensure_schema(URL)
    return Store(URL)


def stored(symbol: str, count: int) -> None:
    wait_for(lambda: sql(f"select count() n from trades where symbol = '{symbol}'")[0]["n"] == count,
             message=f"{count} rows of {symbol} applied")


def test_candidates_and_exact_holes_with_ties_stored_out_of_id_order(store):
    symbol = unique("AUD") + "-USDT"
    # ids 100..120 over a few ms; 105-106 missing; 110 and 111 share a ms and arrive in the
    # wrong order; 113..115 aggregated in one row (fills 3); 117 missing.
    rows = [(i, 1, T0 + i // 3) for i in range(100, 110) if i not in (105, 106)]
    rows += [(111, 1, T0 + 37), (110, 1, T0 + 37), (112, 1, T0 + 37), (115, 3, T0 + 38), (116, 1, T0 + 38),
             (118, 1, T0 + 39), (119, 1, T0 + 39), (120, 1, T0 + 40)]
    write(symbol, rows[:6])
    write(symbol, rows[6:])
    stored(symbol, len(rows))
    exact = sorted({(h.first_id, h.last_id) for c in store.candidates(symbol, None)
                    for h in store.exact(symbol, c.after_us, c.before_us)})
    assert exact == [(105, 106), (117, 117)]
    assert store.last_ids([symbol, "NONE-USDT"]) == {symbol: 120}
    assert store.newest(symbol) == (T0 + 40) * 1000


def test_the_ledger_survives_a_restart(store):
    symbol = unique("LED") + "-USDT"
    ledger = Ledger(Policy())
    entries = ledger.found([hole(10, 14, symbol=symbol), hole(30, 31, symbol=symbol)], NOW)
    gone = ledger.attempted(entries[1], job(entries[1], exhausted=True), NOW + S)
    store.save(entries)
    store.save([gone])  # re-written whole: DEDUP keeps the newest
    wait_for(lambda: len(store.load([symbol])) == 2 and {e.state for e in store.load([symbol])} == {"open", "unrecoverable"},
             message="ledger rows readable")
    assert sorted(store.load([symbol]), key=lambda e: e.first_id) == [entries[0], gone]


def test_a_pass_records_fills_and_closes_holes(store):
    symbol = unique("PASS") + "-USDT"
    write(symbol, [(i, 1, T0 + i) for i in range(1, 51) if not 20 <= i <= 29])
    stored(symbol, 40)
    fills: list[Fill] = []
    auditor = Auditor(store, (symbol,), Policy(settle_s=0), submit=fills.append, pending=lambda *a: False)
    auditor.audit()
    assert [(f.first_id, f.last_id, f.priority) for f in fills] == [(20, 29, Priority.HOLE)]
    assert auditor.ledger.missing(symbol) == 10
    write(symbol, [(i, 1, T0 + i) for i in range(20, 26)])  # part of it filled
    stored(symbol, 46)
    fills[0].found = 6
    fills[0].on_done(fills[0])
    auditor.audit()
    assert auditor.ledger.missing(symbol) == 4
    write(symbol, [(i, 1, T0 + i) for i in range(26, 30)])
    stored(symbol, 50)
    auditor.audit()
    assert auditor.ledger.missing(symbol) == 0 and auditor.ledger.active(symbol) == []
    wait_for(lambda: [(r["state"], r["missing"], r["attempts"]) for r in
                      sql(f"select * from trade_holes where symbol = '{symbol}'")] == [("closed", 0, 1)],
             message="the closed hole in the ledger table")


def test_ledger_rows_without_times_load_as_long_ago(store):
    symbol = unique("BARE") + "-USDT"
    query(URL, f"INSERT INTO trade_holes (symbol, first_id, last_id, missing, state, found_at) "
               f"VALUES ('{symbol}', 5, 9, 5, 'open', now())")
    wait_for(lambda: store.load([symbol]), message="the hand-written row readable")
    (entry,) = store.load([symbol])
    assert (entry.after_us, entry.before_us, entry.attempts, entry.detail) == (0, 0, 0, "")
    # ... and a fill attempt on it is decided, not a TypeError in the REST worker.
    ledger = Ledger(Policy(gone_min_age_s=600), [entry])
    assert ledger.attempted(entry, job(entry, exhausted=True), NOW).state == "unrecoverable"


def test_only_followed_symbols_holes_are_filled(store):
    followed, other = unique("FOL") + "-USDT", unique("OTH") + "-USDT"
    for symbol in (followed, other):
        write(symbol, [(i, 1, T0 + i) for i in (1, 2, 3, 7, 8)])
        stored(symbol, 5)
    # The ledger knows the other symbol's hole (followed before, say): it is kept, not fetched.
    Auditor(store, (other,), Policy(settle_s=0), submit=lambda fill: None, pending=lambda *a: False).audit()
    wait_for(lambda: store.load([other]), message="the other symbol's hole in the ledger")
    fills: list[Fill] = []
    auditor = Auditor(store, (followed,), Policy(settle_s=0), submit=fills.append, pending=lambda *a: False)
    auditor.audit()
    assert [(f.symbol, f.first_id, f.last_id) for f in fills] == [(followed, 4, 6)]

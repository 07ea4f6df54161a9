"""Prices and sizes as the exchange means them: /symbols carries each symbol's metadata and
24 h change, and no answer prints a double's binary noise (sums of sizes like 0.1 + 0.2)."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gostream.api import market
from gostream.api.db import Database, make_engine
from gostream.api.settings import ApiSettings
from tests.api.pipeline import get, insert_trade
from tests.conftest import TEST_PORTS, sql, unique, wait_for

PORT = TEST_PORTS.api
NUMBER = re.compile(r"(?<![\"\w])-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?(?![\"\w])")


def raw(path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=15) as response:
        assert response.status == 200
        return response.read().decode()


def significant(number: str) -> int:
    """Digits of a number's text from its first non-zero one (a double has 17 at most;
    its 16th and 17th are noise: 0.30000000000000004)."""
    return len(re.split("[eE]", number)[0].lstrip("-").replace(".", "").lstrip("0"))


def decimals(number: str) -> int:
    mantissa = re.split("[eE]", number)[0]
    places = len(mantissa.split(".")[1].rstrip("0")) if "." in mantissa else 0
    exponent = int(re.split("[eE]", number)[1]) if re.search("[eE]", number) else 0
    return max(0, places - exponent)


def numbers_in(text: str) -> list[str]:
    """Every JSON number of a body (keys and strings left out)."""
    return NUMBER.findall(text)


def set_metadata(symbol: str, tick: str, lot: str) -> None:
    query = (f"INSERT INTO instruments (symbol, inst_type, state, tick_sz, lot_sz, min_sz, base_ccy, quote_ccy, "
             f"updated_at, ts) VALUES ('{symbol}', 'SPOT', 'live', '{tick}', '{lot}', '{lot}', "
             f"'{symbol.split('-')[0]}', 'USDT', now(), 0)")
    with urllib.request.urlopen(f"http://127.0.0.1:{TEST_PORTS.questdb_http}/exec?"
                                + urllib.parse.urlencode({"query": query}), timeout=30) as response:
        assert response.status == 200
    wait_for(lambda: sql(f"SELECT count() n FROM instruments WHERE symbol = '{symbol}'")[0]["n"] == 1, 60,
             message=f"metadata of {symbol} in QuestDB")


def listed(symbol: str) -> dict | None:
    return next((s for s in get(PORT, "/symbols")[1] if s["symbol"] == symbol), None)


@pytest.fixture(scope="module")
def noisy(market) -> dict[str, str]:
    """Two symbols whose sizes add up to binary noise (0.1 + 0.2 = 0.30000000000000004 in
    doubles) and whose prices differ by a noisy amount (100.3 - 100.1), one with OKX
    metadata (tick 0.1, lot 0.0001), one without; trades in the last two hours."""
    names = {"meta": unique("NZM") + "-USDT", "plain": unique("NZP") + "-USDT"}
    set_metadata(names["meta"], "0.1", "0.0001")
    now = time.time()
    for symbol in names.values():
        for i, (price, size, ago_s) in enumerate(((100.1, 0.1, 7200), (100.2, 0.2, 7100), (100.3, 0.3, 90),
                                                  (100.3, 0.1, 30))):
            insert_trade(symbol, 1000 + i, price, size, now - ago_s)
    # The api reads the metadata table every few seconds.
    wait_for(lambda: (listed(names["meta"]) or {}).get("tick_size") == "0.1", 60, message="the api sees the metadata")
    return names


def test_symbols_carry_metadata_and_the_24h_change(market, noisy):
    meta, plain = listed(noisy["meta"]), listed(noisy["plain"])
    newest = int(time.time() - 30) // 60 * 60
    assert meta == {"symbol": noisy["meta"], "last": 100.3, "time": pytest.approx(newest, abs=60),
                    "change_pct_24h": float(f"{(100.3 - 100.1) / 100.1 * 100:.12g}"), "volume_24h": 0.7,
                    "inst_type": "SPOT", "tick_size": "0.1", "lot_size": "0.0001", "price_precision": 1,
                    "size_precision": 4}
    assert plain == {**meta, "symbol": noisy["plain"], "inst_type": None, "tick_size": None, "lot_size": None,
                     "price_precision": None, "size_precision": None}
    # A symbol whose trades are all older than 24 h: no change or volume to speak of.
    old = listed(market.spread)
    assert old["change_pct_24h"] is None and old["volume_24h"] is None and old["last"] is not None


@pytest.mark.parametrize("kind", ["meta", "plain"])
def test_no_answer_prints_binary_noise(noisy, kind):
    symbol = noisy[kind]
    bodies = {path: raw(path) for path in (
        f"/candles?symbol={symbol}&interval=1h&from=0", f"/candles?symbol={symbol}&interval=1d",
        f"/candles?symbol={symbol}&interval=1m&from=0&to={int(time.time())}",
        f"/candles?symbol={symbol}&interval=1s&from=0", f"/stats?symbol={symbol}", f"/trades?symbol={symbol}",
        "/symbols")}
    for path, body in bodies.items():
        found = numbers_in(body)
        assert found, path
        assert all(significant(n) <= 15 for n in found), (path, [n for n in found if significant(n) > 15])
        assert "0.30000000000000004" not in body and "0.20000000000000284" not in body, path
    stats = json.loads(bodies[f"/stats?symbol={symbol}"])
    # The window is the 24 h up to the latest trade: every trade; volume 0.7, change 0.2.
    assert (stats["volume"], stats["change"], stats["trades"]) == (0.7, 0.2, 4)
    hour = json.loads(bodies[f"/candles?symbol={symbol}&interval=1h&from=0"])
    assert sum(c["volume"] for c in hour) == pytest.approx(0.7)
    first_hour = [c for c in hour if c["open"] == 100.1][0]
    assert first_hour["volume"] in (0.3, 0.1, 0.2)  # the two early trades: together, or either hour
    if kind == "meta":  # with metadata: prices with the tick size's decimals, sizes with the lot size's
        for path, body in bodies.items():
            rows = json.loads(body)
            for row in rows if isinstance(rows, list) else [rows]:
                if path.startswith(("/candles", "/stats")):
                    assert all(decimals(repr(row[k])) <= 1 for k in ("open", "high", "low") if row[k] is not None)
                    assert decimals(repr(row["volume"])) <= 4, (path, row)


def test_the_metadata_and_names_as_the_api_reads_them(noisy):
    db = Database(make_engine(ApiSettings(questdb_host="127.0.0.1", questdb_pg_port=TEST_PORTS.questdb_pg)))
    try:
        assert market.instruments(db)[noisy["meta"]] == {
            "symbol": noisy["meta"], "inst_type": "SPOT", "tick_size": "0.1", "lot_size": "0.0001",
            "price_precision": 1, "size_precision": 4, "base": noisy["meta"].split("-")[0], "quote": "USDT",
            "state": "live"}
        assert noisy["plain"] not in market.instruments(db)
        assert market.symbol_names(db) == [s["symbol"] for s in get(PORT, "/symbols")[1]]
    finally:
        db.close()


@pytest.mark.parametrize("size, places", [("0.1", 1), ("0.00000001", 8), ("1", 0), ("10", 0), ("0.5", 1),
                                          ("0.00005", 5), ("", None), ("abc", None), (None, None), ("1e-3", 3)])
def test_decimals_of_an_okx_size(size, places):
    assert market.decimals(size) == places


@settings(max_examples=500)
@given(st.floats(min_value=0, max_value=1e12, allow_nan=False), st.none() | st.integers(0, 12))
def test_rounding_never_prints_noise_and_stays_within_half_a_unit(x, places):
    got = market.rounded(x, places)
    text = repr(got)
    assert significant(text) <= 15
    if places is not None:
        assert decimals(text) <= places or significant(text) == 15
        assert abs(got - x) <= 0.5 * 10 ** -places + abs(x) * 1e-14
    else:
        assert abs(got - x) <= abs(x) * 1e-11
    # The /candles fast path prints the same number from QuestDB's text.
    assert float(market._digits(None, places).size_text(repr(x))) == market._digits(None, places).size(x)

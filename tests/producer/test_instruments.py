"""Which instruments SYMBOLS names, and how requests for them are cut: pure functions."""

import json
from dataclasses import astuple

from hypothesis import given, settings
from hypothesis import strategies as st

from gostream.producer import okx
from gostream.producer.connection import MAX_REQUEST_BYTES, Pacer, chunks
from gostream.common.trade import inst_type
from gostream.producer.instruments import _CCY, _DECIMAL, _WORD, Listing, parse_instruments, resolve, upsert_sql
from tests.common.test_trade_properties import json_values

LISTINGS = [Listing("BTC-USDT", "SPOT", "live"), Listing("ETH-USDT", "SPOT", "live"), Listing("ETH-BTC", "SPOT", "live"),
            Listing("OLD-USDT", "SPOT", "suspend"), Listing("NEW-USDT", "SPOT", "preopen"),
            Listing("BTC-USDT-SWAP", "SWAP", "live")]


def test_patterns_match_live_instruments_only():
    got = resolve(("ETH-*", "*-USDT"), LISTINGS)
    assert got.symbols == {"ETH-USDT", "ETH-BTC", "BTC-USDT"} and got.problems == []


def test_exact_ids_are_followed_unless_the_list_shows_them_not_live():
    got = resolve(("BTC-USDT", "OLD-USDT", "XYZ-USDT"), LISTINGS)
    assert got.symbols == {"BTC-USDT", "XYZ-USDT"}  # OKX itself says XYZ does not exist
    assert got.problems == ["instruments: OLD-USDT is suspend, not live: not followed"]


def test_without_the_list_patterns_wait_and_exact_ids_go_ahead():
    got = resolve(("BTC-USDT", "*-USDT"), None)
    assert got.symbols == {"BTC-USDT"}


def test_a_pattern_matching_nothing_is_said():
    assert resolve(("DOGE-*",), LISTINGS).problems == ["instruments: 'DOGE-*' matches no live instrument"]


def test_instrument_types_from_ids():
    assert [inst_type(i) for i in ("BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-250627", "BTC-USD-250627-100000-C")] == [
        "SPOT", "SWAP", "FUTURES", "OPTION"]


def test_the_instrument_list_parser_keeps_good_items():
    body = json.dumps({"code": "0", "msg": "", "data": [
        {"instId": "BTC-USDT", "instType": "SPOT", "state": "live", "tickSz": "0.1"},
        {"instId": "bad id", "instType": "SPOT", "state": "live"}, "junk", {"instId": "ETH-USDT", "state": 3}]})
    assert parse_instruments(body) == ([Listing("BTC-USDT", "SPOT", "live", tick_sz="0.1", base_ccy="BTC",
                                                quote_ccy="USDT")], ["bad-instId", "bad-item", "bad-field"], None)
    assert parse_instruments('{"code":"50014","msg":"Parameter instType can not be empty","data":[]}')[2] == \
        "okx code 50014: Parameter instType can not be empty"


@settings(max_examples=200)
@given(json_values | st.text(max_size=200))
def test_the_instrument_list_parser_never_raises(value):
    body = value if isinstance(value, str) else json.dumps(value)
    listings, rejected, error = parse_instruments(body)
    assert error is None or listings == []


def test_the_metadata_of_an_instrument_as_okx_gives_it():
    # Real records' shape (values as strings, "" where OKX has none): a spot pair and a
    # linear swap, whose base and quote OKX leaves empty.
    body = json.dumps({"code": "0", "msg": "", "data": [
        {"instType": "SPOT", "instId": "BTC-USDT", "baseCcy": "BTC", "quoteCcy": "USDT", "tickSz": "0.1",
         "lotSz": "0.00000001", "minSz": "0.00001", "ctVal": "", "state": "live", "listTime": "1548133413000"},
        {"instType": "SWAP", "instId": "ETH-USDT-SWAP", "baseCcy": "", "quoteCcy": "", "tickSz": "0.01",
         "lotSz": "0.01", "minSz": "0.01", "ctVal": "0.1", "ctValCcy": "ETH", "state": "live"}]})
    listings, rejected, error = parse_instruments(body)
    assert (rejected, error) == ([], None)
    assert listings == [
        Listing("BTC-USDT", "SPOT", "live", "0.1", "0.00000001", "0.00001", "", "BTC", "USDT"),
        Listing("ETH-USDT-SWAP", "SWAP", "live", "0.01", "0.01", "0.01", "0.1", "ETH", "USDT")]


def test_a_bad_size_field_is_a_reason_and_the_instrument_is_kept_without_it():
    body = json.dumps({"code": "0", "msg": "", "data": [
        {"instType": "SPOT", "instId": "X-USDT", "state": "live", "tickSz": "1e-5", "lotSz": 0.001,
         "minSz": "-1", "ctVal": "0.1'); DROP TABLE trades; --", "baseCcy": "x y", "quoteCcy": None}]})
    listings, rejected, _ = parse_instruments(body)
    assert listings == [Listing("X-USDT", "SPOT", "live", "", "", "", "", "X", "USDT")]
    assert rejected == ["bad-tickSz", "bad-lotSz", "bad-minSz", "bad-ctVal"]


instrument_items = st.fixed_dictionaries(
    {"instId": st.from_regex(r"\A[A-Z0-9]{1,6}-[A-Z0-9]{1,6}(-SWAP)?\Z") | json_values,
     "instType": st.sampled_from(["SPOT", "SWAP"]) | json_values,
     "state": st.sampled_from(["live", "suspend"]) | json_values},
    optional={name: st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,10})?\Z") | json_values | st.text(max_size=30)
              for name in ("tickSz", "lotSz", "minSz", "ctVal", "baseCcy", "quoteCcy")})


@settings(max_examples=300)
@given(st.lists(instrument_items | json_values, max_size=6))
def test_the_metadata_parser_never_raises_and_keeps_only_values_of_a_strict_shape(items):
    listings, rejected, error = parse_instruments(json.dumps({"code": "0", "msg": "", "data": items}))
    assert error is None and len(listings) + sum(r in ("bad-item", "bad-instId", "bad-field") for r in rejected) \
        == len(items)
    for item in listings:
        assert _WORD.fullmatch(item.inst_type) and _WORD.fullmatch(item.state)
        assert all(v == "" or _DECIMAL.fullmatch(v) for v in (item.tick_sz, item.lot_sz, item.min_sz, item.ct_val))
        assert _CCY.fullmatch(item.base_ccy) and _CCY.fullmatch(item.quote_ccy)
    if listings:  # what reaches SQL: no quote but the ones around values
        sql = upsert_sql(listings)
        assert sql.count("'") == 2 * sum(v != "" for item in listings for v in astuple(item))


@settings(max_examples=100)
@given(st.lists(st.from_regex(r"\A[A-Z0-9]{1,20}-[A-Z0-9]{1,20}(-SWAP)?\Z"), max_size=3000, unique=True))
def test_requests_stay_under_okx_size_limit_and_carry_every_symbol_once(symbols):
    requests = [request for request, _ in chunks("trades-all", symbols, "subscribe")]
    assert all(len(r.encode()) <= MAX_REQUEST_BYTES for r in requests)
    carried = [arg["instId"] for r in requests for arg in json.loads(r)["args"]]
    assert carried == symbols
    assert all(json.loads(r)["op"] == "subscribe" for r in requests)


def test_unsubscribe_requests():
    assert json.loads(okx.subscribe_request("trades", ("BTC-USDT",), "unsubscribe")) == {
        "op": "unsubscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"}]}


def test_the_pacer_spaces_connection_attempts_across_connections():
    pacer = Pacer(per_second=2.5)
    waits = [pacer.reserve() for _ in range(5)]
    assert waits[0] == 0
    # Booked slots 0.4 s apart: five attempts span 1.6 s, never 3 within one second.
    assert all(abs((b - a) - 0.4) < 0.05 for a, b in zip(waits, waits[1:]))

"""Property-based: the record decoder only ever returns valid Trades or raises RecordError,
and whatever it returns fits the consumer's QuestDB row.

The strategies here (``json_values``, ``nasty_strings``, ``anything``, ``fragments``,
``spliced``) are shared with the OKX parser properties."""

import json
import warnings
from dataclasses import astuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from gostream.common.trade import (
    MAX_RECEIVED_US,
    MAX_TS_MS,
    MIN_RECEIVED_US,
    MIN_TS_MS,
    RecordError,
    Trade,
    decode,
    encode,
    encode_batch,
    validate,
)
from gostream.consumer.sink import QuestDBSink

with warnings.catch_warnings():  # the ILP buffer a Sender flushes, built offline; only the old path exports it
    warnings.simplefilter("ignore", DeprecationWarning)
    from questdb.ingress import Buffer

# Strings a parser of numbers and names is likely to trip on: what float() or int() take
# or refuse in surprising ways, limits of the QuestDB columns, non-ASCII digits, controls.
nasty_strings = st.sampled_from([
    ".", "", "-1", "1e5", "1E5", "nan", "NaN", "inf", "-inf", "Infinity", "0", "-0", "00", "0.0", "1.", ".5",
    " 1", "1 ", "1_0", "+1", "0x10", "1.2.3", "٣", "１", "²", "\u0000", "\ud800", "\n", "BTC-USDT\n", "btc-usdt",
    "buy ", "BUY", "9" * 19, "9" * 20, "9" * 31, "9" * 400, "9" * 5000, "1" + "0" * 308, "0." + "0" * 400 + "1",
    "9223372036854775807", "9223372036854775808", "2147483647", "2147483648", "18446744073709551616",
    "1230767999999", "4102444800001", "trades-all", "trades", "books", "subscribe", "error", "notice", "64008",
]) | st.text(max_size=30) | st.from_regex(r"\A[-+]?[0-9]{0,25}(\.[0-9]{0,25})?([eE][-+]?[0-9]{1,4})?\Z")
# Numbers at and beyond the limits: the int64 and int32 edges, beyond float range.
nasty_numbers = st.sampled_from([
    0, -1, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), 2**64, 10**308, 10**309, 10**400, 10**4000,
    MIN_TS_MS - 1, MAX_TS_MS + 1, MIN_RECEIVED_US - 1, MAX_RECEIVED_US + 1,
    0.0, -0.0, 5e-324, 1.7976931348623157e308, float("inf"), float("-inf"), float("nan"), 1e-300, 0.5,
]) | st.integers() | st.floats()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text() | nasty_strings | nasty_numbers,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=20,
)
# What stands in for a field: arbitrary JSON, and strings of the nasty kind on their own.
anything = json_values | nasty_strings | nasty_numbers


def _deep(depth: int, kind: str) -> str:
    return {"list": "[" * depth + "]" * depth, "object": '{"a":' * depth + "1" + "}" * depth,
            "mixed": '[{"a":' * depth + "1" + "}]" * depth}[kind]


# A field's JSON text: any value's, or nesting deeper than json's recursion limit can take
# (the text json.dumps cannot produce from a value).
fragments = anything.map(json.dumps) | st.builds(_deep, st.sampled_from([1, 10, 500, 5000, 100_000]),
                                                 st.sampled_from(["list", "object", "mixed"]))
_HOLE = "\x00hole\x00"


def spliced(obj: object, fragment: str) -> str:
    """``obj`` as JSON text with the one ``_HOLE`` string in it replaced by ``fragment``."""
    text = json.dumps(obj)
    hole = json.dumps(_HOLE)
    assert text.count(hole) == 1
    return text.replace(hole, fragment)


symbols = st.from_regex(r"\A[A-Z0-9]{1,6}-[A-Z0-9]{1,6}\Z")
trades = st.builds(
    Trade,
    symbol=symbols,
    trade_id=st.integers(1, 2**63 - 1),
    price=st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False),
    size=st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False),
    side=st.sampled_from(["buy", "sell"]),
    ts_ms=st.integers(MIN_TS_MS, MAX_TS_MS),
    received_us=st.integers(MIN_RECEIVED_US, MAX_RECEIVED_US),
    count=st.integers(1, 2**31 - 1),
)
RECORD_FIELDS = ("trade_id", "price", "size", "side", "ts", "received", "count")


def decodes_or_rejects(value) -> list[Trade]:
    """decode's whole contract: valid trades, or RecordError with a reason; never else."""
    try:
        decoded = decode(value)
    except RecordError as exc:
        assert exc.reason and isinstance(exc.reason, str) and isinstance(exc.detail, str)
        exc.detail.encode()  # it goes into a Kafka header
        return []
    assert decoded and all(validate(trade) is trade for trade in decoded)
    fits_questdb(decoded)
    return decoded


def fits_questdb(decoded: list[Trade]) -> None:
    """The consumer's own ``QuestDBSink.add`` takes every trade into an ILP buffer (of each
    protocol version the client speaks), offline: no sender, no server."""
    for protocol_version in (1, 2, 3):
        sink = QuestDBSink.__new__(QuestDBSink)  # add() needs only the buffer, not a connection
        sink._buffer = Buffer(protocol_version)
        sink._exchange_ms = []
        for trade in decoded:
            sink.add(trade)
        assert sink.rows == len(decoded) and len(sink._buffer) > 0


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(value):
    decodes_or_rejects(value)


@settings(max_examples=200)
@given(json_values)
def test_arbitrary_json(value):
    decodes_or_rejects(json.dumps(value).encode())


@settings(max_examples=200)
@given(trades, st.sampled_from(("v", "symbol", *RECORD_FIELDS)), fragments)
def test_every_v1_field_replaced_by_anything(trade, field, fragment):
    obj = json.loads(encode(trade))
    obj[field] = _HOLE
    decodes_or_rejects(spliced(obj, fragment).encode())


@settings(max_examples=200)
@given(st.lists(trades, min_size=1, max_size=4), st.data())
def test_every_v2_field_replaced_by_anything(batch, data):
    obj = json.loads(encode_batch([Trade(batch[0].symbol, *astuple(t)[1:]) for t in batch]))
    where = data.draw(st.sampled_from(["v", "symbol", "trades", "trade", "item"]))
    if where == "trade":  # one whole element of "trades"
        obj["trades"][data.draw(st.integers(0, len(batch) - 1))] = _HOLE
    elif where == "item":  # one field of one element
        obj["trades"][data.draw(st.integers(0, len(batch) - 1))][data.draw(st.sampled_from(RECORD_FIELDS))] = _HOLE
    else:
        obj[where] = _HOLE
    decodes_or_rejects(spliced(obj, data.draw(fragments)).encode())


@settings(max_examples=200)
@given(trades, st.dictionaries(st.sampled_from(("v", "symbol", *RECORD_FIELDS)), anything, max_size=3))
def test_valid_records_with_fields_replaced(trade, replacements):
    obj = json.loads(encode(trade))
    obj.update(replacements)
    decodes_or_rejects(json.dumps(obj).encode())


# Values at the edges of what decode may accept: each either refused or written.
edges = st.fixed_dictionaries({
    "trade_id": st.sampled_from([1, 2**63 - 1, 2**63, 2**64, 10**30, 0]),
    "price": st.sampled_from([5e-324, 1e-300, 1.7976931348623157e308, 10**308, 10**309, 10**400, 1, 0.1]),
    "size": st.sampled_from([5e-324, 1.7976931348623157e308, 10**308, 10**400, 3]),
    "ts": st.sampled_from([MIN_TS_MS, MAX_TS_MS, MIN_TS_MS - 1, MAX_TS_MS + 1]),
    "received": st.sampled_from([MIN_RECEIVED_US, MAX_RECEIVED_US, 1, 0, 2**63 - 1, 2**63, 2**64]),
    "count": st.sampled_from([1, 2**31 - 1, 2**31, 2**63, 2**64]),
})


@settings(max_examples=200)
@given(trades, edges, st.booleans())
def test_whatever_decode_accepts_fits_the_questdb_row(trade, changes, batched):
    obj = json.loads(encode_batch([trade]) if batched else encode(trade))
    (obj["trades"][0] if batched else obj).update(changes)
    decodes_or_rejects(json.dumps(obj).encode())


@pytest.mark.parametrize("fragment", ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000])
def test_nesting_beyond_the_recursion_limit_is_not_json(fragment):
    for text in (fragment, spliced({"v": 1, "symbol": _HOLE}, fragment)):
        with pytest.raises(RecordError) as err:
            decode(text.encode())
        assert err.value.reason == "not-json"


@settings(max_examples=200)
@given(trades)
@example(Trade("A-B", 2**63 - 1, 5e-324, 1.7976931348623157e308, "sell", MAX_TS_MS, MAX_RECEIVED_US, 2**31 - 1))
@example(Trade("A-B", 1, 1e-12, 1e-12, "buy", MIN_TS_MS, MIN_RECEIVED_US, 1))
def test_every_valid_trade_round_trips(trade):
    assert decode(encode(trade)) == [trade]
    fits_questdb([trade])


@settings(max_examples=100)
@given(st.lists(trades, min_size=1, max_size=20))
def test_every_valid_batch_round_trips(batch):
    batch = [Trade(batch[0].symbol, *fields[1:]) for fields in (astuple(t) for t in batch)]
    assert decode(encode_batch(batch)) == batch

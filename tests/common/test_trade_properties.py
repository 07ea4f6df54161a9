"""Property-based: the record decoder only ever returns valid Trades or raises RecordError."""

import json
from dataclasses import astuple

from hypothesis import given, settings
from hypothesis import strategies as st

from gostream.common.trade import MAX_TS_MS, MIN_TS_MS, RecordError, Trade, decode, encode, encode_batch, validate

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=20,
)
symbols = st.from_regex(r"\A[A-Z0-9]{1,6}-[A-Z0-9]{1,6}\Z")
trades = st.builds(
    Trade,
    symbol=symbols,
    trade_id=st.integers(1, 2**63 - 1),
    price=st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False),
    size=st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False),
    side=st.sampled_from(["buy", "sell"]),
    ts_ms=st.integers(MIN_TS_MS, MAX_TS_MS),
    received_us=st.integers(1, 2**62),
    count=st.integers(1, 10_000),
)


def decodes_or_rejects(value) -> None:
    try:
        decoded = decode(value)
    except RecordError as exc:
        assert exc.reason and isinstance(exc.reason, str)
    else:
        assert decoded and all(validate(trade) is trade for trade in decoded)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(value):
    decodes_or_rejects(value)


@settings(max_examples=200)
@given(json_values)
def test_arbitrary_json(value):
    decodes_or_rejects(json.dumps(value).encode())


@settings(max_examples=200)
@given(trades, st.dictionaries(st.sampled_from(["v", "symbol", "trade_id", "price", "size", "side", "ts", "received",
                                                "count"]), json_values, max_size=3))
def test_valid_records_with_fields_replaced(trade, replacements):
    obj = json.loads(encode(trade))
    obj.update(replacements)
    decodes_or_rejects(json.dumps(obj).encode())


@settings(max_examples=200)
@given(trades)
def test_every_valid_trade_round_trips(trade):
    assert decode(encode(trade)) == [trade]


@settings(max_examples=100)
@given(st.lists(trades, min_size=1, max_size=20))
def test_every_valid_batch_round_trips(batch):
    batch = [Trade(batch[0].symbol, *fields[1:]) for fields in (astuple(t) for t in batch)]
    assert decode(encode_batch(batch)) == batch

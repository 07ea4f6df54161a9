"""Property-based: the OKX frame parser never raises, whatever arrives."""

import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from gostream.producer import okx
from tests.common.test_trade_properties import json_values

FRAME_TYPES = (okx.Pong, okx.Subscribed, okx.ExchangeError, okx.Notice, okx.OtherEvent, okx.Trades, okx.Rejected)


@settings(max_examples=200)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_arbitrary_messages(message):
    assert isinstance(okx.parse_frame(message, 1), FRAME_TYPES)


@settings(max_examples=200)
@given(json_values)
def test_arbitrary_json(value):
    assert isinstance(okx.parse_frame(json.dumps(value), 1), FRAME_TYPES)


items = st.fixed_dictionaries(
    {
        "instId": st.from_regex(r"\A[A-Z]{2,5}-USDT\Z"),
        "tradeId": st.integers(1, 10**15).map(str),
        "px": st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("10000000"), places=8).map(
            lambda d: format(d.normalize(), "f")
        ),
        "sz": st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("100000"), places=8).map(
            lambda d: format(d.normalize(), "f")
        ),
        "side": st.sampled_from(["buy", "sell"]),
        "ts": st.integers(1_300_000_000_000, 4_000_000_000_000).map(str),
    },
    optional={"count": st.integers(1, 1000).map(str)},
)


@settings(max_examples=200)
@given(st.lists(items, min_size=1, max_size=5), st.sampled_from(okx.CHANNELS))
def test_well_formed_pushes_parse_to_the_same_values(data, channel):
    frame = okx.parse_frame(json.dumps({"arg": {"channel": channel}, "data": data}), 7)
    assert isinstance(frame, okx.Trades) and frame.rejected == ()
    assert [(t.symbol, t.trade_id, t.price, t.size, t.side, t.ts_ms, t.count) for t in frame.trades] == [
        (d["instId"], int(d["tradeId"]), float(d["px"]), float(d["sz"]), d["side"], int(d["ts"]),
         int(d.get("count", "1")))
        for d in data
    ]


@settings(max_examples=200)
@given(st.lists(items, min_size=1, max_size=3), st.sampled_from(["instId", "tradeId", "px", "sz", "side", "ts"]),
       json_values)
def test_a_corrupted_field_is_a_rejection_not_a_crash(data, field, value):
    data[0] = {**data[0], field: value}
    frame = okx.parse_frame(json.dumps({"arg": {"channel": "trades-all"}, "data": data}), 7)
    assert isinstance(frame, okx.Trades)
    assert len(frame.trades) + len(frame.rejected) == len(data)

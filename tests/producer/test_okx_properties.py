"""Property-based: the OKX parsers never raise, whatever arrives, and one bad item costs
only itself: the message's other items are kept."""

import json
import math
import re
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gostream.common.trade import MAX_TS_MS, MIN_TS_MS
from gostream.producer import okx
from tests.common.test_trade_properties import _HOLE, anything, fits_questdb, fragments, json_values, spliced

FRAME_TYPES = (okx.Pong, okx.Subscribed, okx.ExchangeError, okx.Notice, okx.OtherEvent, okx.Trades, okx.Rejected)
RECEIVED = 1_700_000_000_123_456
GOOD = {"instId": "BTC-USDT", "tradeId": "5", "px": "30236.5", "sz": "0.1", "side": "sell", "ts": "1652459224818"}
ITEM_FIELDS = ("instId", "tradeId", "px", "sz", "side", "ts", "count")


def _decimal_text(high: str):
    return st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(high), places=8).map(
        lambda d: format(d.normalize(), "f"))


items = st.fixed_dictionaries(
    {
        "instId": st.from_regex(r"\A[A-Z]{2,5}-USDT\Z"),
        "tradeId": st.integers(1, 10**15).map(str),
        "px": _decimal_text("10000000"),
        "sz": _decimal_text("100000"),
        "side": st.sampled_from(["buy", "sell"]),
        "ts": st.integers(1_300_000_000_000, 4_000_000_000_000).map(str),
    },
    optional={"count": st.integers(1, 1000).map(str), "source": anything},  # REST pages carry "source"
)


def is_valid(field: str, value: object) -> bool:
    """The spec of an item field, written out independently of the parser."""
    if not isinstance(value, str):
        return False
    digits = re.fullmatch(r"[0-9]{1,19}", value, re.ASCII)
    if field == "instId":
        return re.fullmatch(r"[A-Z0-9]{1,20}(-[A-Z0-9]{1,20}){1,4}", value, re.ASCII) is not None
    if field == "tradeId":
        return bool(digits) and 1 <= int(value) <= 2**63 - 1
    if field == "ts":
        return bool(digits) and MIN_TS_MS <= int(value) <= MAX_TS_MS
    if field == "count":
        return bool(digits) and 1 <= int(value) <= 2**31 - 1
    if field in ("px", "sz"):
        return re.fullmatch(r"[0-9]{1,30}(\.[0-9]{1,30})?", value, re.ASCII) is not None and 0 < float(value) < math.inf
    return value in ("buy", "sell")  # side


def as_tuple(item: dict) -> tuple:
    return (item["instId"], int(item["tradeId"]), float(item["px"]), float(item["sz"]), item["side"], int(item["ts"]),
            RECEIVED, int(item.get("count", "1")))


def trade_tuple(t) -> tuple:
    return (t.symbol, t.trade_id, t.price, t.size, t.side, t.ts_ms, t.received_us, t.count)


# -- WebSocket frames ----------------------------------------------------------
@settings(max_examples=200)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_arbitrary_messages(message):
    assert isinstance(okx.parse_frame(message, RECEIVED), FRAME_TYPES)


@settings(max_examples=200)
@given(json_values)
def test_arbitrary_json(value):
    assert isinstance(okx.parse_frame(json.dumps(value), RECEIVED), FRAME_TYPES)


@settings(max_examples=200)
@given(st.lists(items, min_size=1, max_size=5), st.sampled_from(okx.CHANNELS))
def test_well_formed_pushes_parse_to_the_same_values(data, channel):
    frame = okx.parse_frame(json.dumps({"arg": {"channel": channel}, "data": data}), RECEIVED)
    assert isinstance(frame, okx.Trades) and frame.rejected == ()
    assert [trade_tuple(t) for t in frame.trades] == [as_tuple(d) for d in data]
    fits_questdb(list(frame.trades))


@settings(max_examples=200)
@given(items, items, st.sampled_from(ITEM_FIELDS), anything)
@example(GOOD, GOOD, "px", ".")  # once a ValueError out of parse_frame: it stopped the producer
@example(GOOD, GOOD, "tradeId", "9223372036854775808")
def test_a_corrupted_push_item_is_rejected_and_its_neighbours_kept(first, last, field, value):
    corrupted = {**first, field: value}
    frame = okx.parse_frame(json.dumps({"arg": {"channel": "trades-all"}, "data": [first, corrupted, last]}), RECEIVED)
    assert isinstance(frame, okx.Trades)
    kept = [trade_tuple(t) for t in frame.trades]
    if is_valid(field, value):
        assert frame.rejected == () and kept == [as_tuple(first), as_tuple(corrupted), as_tuple(last)]
        fits_questdb(list(frame.trades))
    else:
        assert len(frame.rejected) == 1 and kept == [as_tuple(first), as_tuple(last)]
        assert re.fullmatch(r"[a-z_-]{3,20}", frame.rejected[0])  # a metric label


@settings(max_examples=200)
@given(items, st.sampled_from(ITEM_FIELDS), fragments)
def test_any_json_text_in_a_push_item_field_is_a_frame(item, field, fragment):
    frame = okx.parse_frame(spliced({"arg": {"channel": "trades"}, "data": [{**item, field: _HOLE}]}, fragment),
                            RECEIVED)
    assert isinstance(frame, FRAME_TYPES)


@settings(max_examples=200)
@given(st.sampled_from(["arg", "data", "event", "channel", "item"]), fragments, st.lists(items, max_size=2))
def test_any_json_text_in_the_push_envelope_is_a_frame(where, fragment, data):
    msg = {"arg": {"channel": "trades-all", "instId": "BTC-USDT"}, "data": data}
    if where == "channel":
        msg["arg"]["channel"] = _HOLE
    elif where == "item":
        msg["data"] = [*data, _HOLE]
    else:
        msg[where] = _HOLE
    frame = okx.parse_frame(spliced(msg, fragment), RECEIVED)
    assert isinstance(frame, FRAME_TYPES)
    if where == "item" and isinstance(frame, okx.Trades):  # the bad element costs only itself
        assert [trade_tuple(t) for t in frame.trades] == [as_tuple(d) for d in data] and len(frame.rejected) == 1


@settings(max_examples=200)
@given(st.sampled_from(["subscribe", "error", "notice", "unsubscribe"]), st.sampled_from(["arg", "code", "msg", "event",
                                                                                           "channel", "instId"]),
       fragments)
def test_any_json_text_in_an_event_field_is_a_frame(event, field, fragment):
    msg = {"event": event, "arg": {"channel": "trades-all", "instId": "BTC-USDT"}, "code": "60012", "msg": "x",
           "connId": "a"}
    if field in ("channel", "instId"):
        msg["arg"][field] = _HOLE
    else:
        msg[field] = _HOLE
    frame = okx.parse_frame(spliced(msg, fragment), RECEIVED)
    assert isinstance(frame, FRAME_TYPES)
    if isinstance(frame, okx.Subscribed):
        assert isinstance(frame.channel, str) and isinstance(frame.symbol, str)
    if isinstance(frame, (okx.ExchangeError, okx.Notice)):
        assert isinstance(frame.code, str) and isinstance(frame.message, str)
    if isinstance(frame, okx.OtherEvent):
        assert isinstance(frame.name, str)


# -- REST history-trades pages -------------------------------------------------
def page(data, code: object = "0", msg: object = "") -> str:
    return json.dumps({"code": code, "msg": msg, "data": data})


def valid_id(item: object) -> int | None:
    if isinstance(item, dict) and isinstance(item.get("tradeId"), str) and is_valid("tradeId", item["tradeId"]):
        return int(item["tradeId"])
    return None


@settings(max_examples=200)
@given(st.text(max_size=300) | st.binary(max_size=300) | json_values.map(json.dumps))
def test_arbitrary_bodies_are_pages(body):
    result = okx.parse_history_page(body, RECEIVED)
    assert isinstance(result, okx.HistoryPage)
    if result.error is not None:
        assert result.trades == () and isinstance(result.error, str)


@settings(max_examples=200)
@given(st.lists(items, min_size=1, max_size=5))
def test_well_formed_pages_parse_to_the_same_values(data):
    result = okx.parse_history_page(page(data).encode(), RECEIVED)
    assert result.error is None and result.rejected == ()
    assert [trade_tuple(t) for t in result.trades] == [as_tuple(d) for d in data]
    assert result.oldest_id == min(int(d["tradeId"]) for d in data)


@settings(max_examples=200)
@given(items, items, st.sampled_from(ITEM_FIELDS), anything)
def test_a_corrupted_page_item_is_rejected_and_its_neighbours_kept(first, last, field, value):
    corrupted = {**first, field: value}
    data = [first, corrupted, last]
    result = okx.parse_history_page(page(data), RECEIVED)
    assert result.error is None
    kept = [trade_tuple(t) for t in result.trades]
    if is_valid(field, value):
        assert result.rejected == () and kept == [as_tuple(d) for d in data]
    else:
        assert len(result.rejected) == 1 and kept == [as_tuple(first), as_tuple(last)]
    assert result.oldest_id == min(i for i in map(valid_id, data) if i is not None)


@settings(max_examples=200)
@given(st.lists(items, max_size=3), st.sampled_from(["code", "msg", "data", "item", "field"]), fragments)
def test_any_json_text_in_a_page_is_a_page(data, where, fragment):
    envelope = {"code": "0", "msg": "", "data": list(data)}
    if where == "item":
        envelope["data"].append(_HOLE)
    elif where == "field":
        envelope["data"].append({"instId": "BTC-USDT", "tradeId": _HOLE, "px": "1", "sz": "1", "side": "buy",
                                 "ts": "1652459224818"})
    else:
        envelope[where] = _HOLE
    result = okx.parse_history_page(spliced(envelope, fragment), RECEIVED)
    assert isinstance(result, okx.HistoryPage)
    if result.error is None and where == "data":  # the fragment is the list of items
        assert len(result.trades) + len(result.rejected) == len(json.loads(fragment))
    elif result.error is None:  # the bad element costs only itself
        assert [trade_tuple(t) for t in result.trades][:len(data)] == [as_tuple(d) for d in data]
        assert len(result.trades) + len(result.rejected) == len(envelope["data"])
    else:
        assert result.trades == () and result.rejected == ()


@settings(max_examples=200)
@given(anything, anything, st.lists(items, max_size=2))
def test_a_failed_envelope_is_an_error_with_no_trades(code, msg, data):
    result = okx.parse_history_page(page(data, code, msg), RECEIVED)
    if code == "0" and isinstance(code, str):
        assert result.error is None and len(result.trades) == len(data)
    else:
        assert result.trades == () and result.error.startswith("okx code ")

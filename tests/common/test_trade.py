import json
import math

import pytest

from gostream.common.trade import RecordError, Trade, decode, encode, encode_batch

GOOD = Trade("BTC-USDT", 338476307, 30236.0, 0.0002, "buy", 1652459224818, 1652459224901234, 1)


def test_round_trip_keeps_every_field():
    assert decode(encode(GOOD)) == [GOOD]
    assert decode(encode_batch([GOOD])) == [GOOD]


def test_a_batch_keeps_its_trades_in_order():
    batch = [Trade("ETH-USDT", 10 + i, 3000.0 + i, 0.5, ("buy", "sell")[i % 2], 1652459224818 + i, 1652459224901234, 1 + i)
             for i in range(5)]
    assert decode(encode_batch(batch)) == batch
    assert decode(encode_batch(batch[::-1])) == batch[::-1]


def test_a_batch_is_one_symbol_and_not_empty():
    with pytest.raises(ValueError):
        encode_batch([])
    with pytest.raises(ValueError):
        encode_batch([GOOD, Trade("ETH-USDT", 1, 1.0, 1.0, "buy", 1652459224818, 1)])


def test_encoding_is_readable_json_with_a_version():
    obj = json.loads(encode(GOOD))
    assert obj == {
        "v": 1, "symbol": "BTC-USDT", "trade_id": 338476307, "price": 30236.0, "size": 0.0002,
        "side": "buy", "ts": 1652459224818, "received": 1652459224901234, "count": 1,
    }


def test_floats_survive_exactly():
    awkward = Trade("BTC-USDT", 1, 0.1 + 0.2, 1e-8, "sell", 1652459224818, 1652459224901234, 3)
    [back] = decode(encode(awkward))
    assert back.price == 0.1 + 0.2 and back.size == 1e-8 and back.count == 3


def _with(**changes) -> bytes:
    obj = json.loads(encode(GOOD))
    obj.update(changes)
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, "empty"),
        (b"", "not-json"),
        (b"\xff\xfe", "not-json"),
        (b"[1,2]", "not-object"),
        (b"{}", "bad-version"),
        (_with(v=3), "bad-version"),
        (_with(v=2), "missing-field"),  # a v1 body under the batch version: no "trades"
        (json.dumps({"v": 2, "symbol": "BTC-USDT", "trades": []}).encode(), "bad-trades"),
        (json.dumps({"v": 2, "symbol": "BTC-USDT", "trades": {}}).encode(), "bad-trades"),
        (json.dumps({"v": 2, "symbol": "BTC-USDT", "trades": [1]}).encode(), "not-object"),
        (json.dumps({"v": 1}).encode(), "missing-field"),
        (_with(symbol="btc-usdt"), "bad-symbol"),
        (_with(symbol="BTCUSDT"), "bad-symbol"),
        (_with(symbol=7), "bad-symbol"),
        (_with(trade_id=0), "bad-trade_id"),
        (_with(trade_id="1"), "bad-trade_id"),
        (_with(trade_id=True), "bad-trade_id"),
        (_with(price=-1), "bad-price"),
        (_with(price=0), "bad-price"),
        (_with(price="1"), "bad-price"),
        (_with(size=0), "bad-size"),
        (_with(side="long"), "bad-side"),
        (_with(ts=1652459224), "bad-ts"),  # seconds, not milliseconds
        (_with(ts=10**15), "bad-ts"),
        (_with(received=0), "bad-received"),
        (_with(count=0), "bad-count"),
        # Escapes found by fuzzing, each once an exception other than RecordError or a
        # record the consumer could not write:
        (_with(price=10**400), "bad-price"),  # math.isfinite: OverflowError
        (_with(size=10**309), "bad-size"),
        (b"[" * 100_000 + b"]" * 100_000, "not-json"),  # json.loads: RecursionError
        (b'{"v":1,"symbol":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001, "not-json"),
        (_with(trade_id=2**63), "bad-trade_id"),  # beyond QuestDB LONG: OverflowError in the ILP buffer
        (_with(received=2**63), "bad-received"),  # beyond TimestampMicros: OverflowError
        (_with(received=1), "bad-received"),  # not a microsecond epoch
        (_with(received=1652459224901), "bad-received"),  # milliseconds, not microseconds
        (_with(count=2**31), "bad-count"),  # beyond QuestDB INT (fills)
        (_with(symbol="BTC-USDT\n"), "bad-symbol"),  # `$` matched before a trailing newline
        (_with(v=True), "bad-version"),  # True == 1
        (_with(v=1.0), "bad-version"),
        (_with(side=["buy"]), "bad-side"),
        ("not bytes".encode().decode(), "not-json"),  # str is decoded as JSON text too
        (12, "not-bytes"),
    ],
)
def test_bad_records_are_rejected_with_a_stable_reason(value, reason):
    with pytest.raises(RecordError) as err:
        decode(value)
    assert err.value.reason == reason


def test_the_largest_values_a_questdb_row_takes_are_accepted():
    [trade] = decode(_with(trade_id=2**63 - 1, count=2**31 - 1, received=4_102_444_800_000_000,
                           price=1.7976931348623157e308))
    assert (trade.trade_id, trade.count, trade.received_us) == (2**63 - 1, 2**31 - 1, 4_102_444_800_000_000)
    [trade] = decode(_with(price=10**300))  # an int price is fine while it fits a double
    assert float(trade.price) == float(10**300)  # the row's DOUBLE (orjson reads ints past 64 bits as floats)


def test_details_are_short_and_never_raise_themselves():
    for value in (10**4000, [[[]]] * 100, "x" * 10_000, "\ud800"):
        with pytest.raises(RecordError) as err:
            decode(json.dumps({**json.loads(encode(GOOD)), "trade_id": value}).encode())
        assert err.value.reason == "bad-trade_id" and len(err.value.detail) < 100
        err.value.detail.encode()  # a Kafka header


def test_non_finite_numbers_are_rejected():
    # json.loads accepts NaN and Infinity; a trade must not.
    for text in (b'NaN', b'Infinity'):
        raw = encode(GOOD).replace(b'"price":30236.0', b'"price":' + text)
        with pytest.raises(RecordError) as err:
            decode(raw)
        assert err.value.reason == "bad-price"
    assert math.isfinite(decode(encode(GOOD))[0].price)


def test_one_bad_trade_refuses_the_whole_batch_and_says_which():
    obj = json.loads(encode_batch([GOOD, GOOD, GOOD]))
    obj["trades"][1]["side"] = "long"
    with pytest.raises(RecordError) as err:
        decode(json.dumps(obj).encode())
    assert err.value.reason == "bad-side" and "trade 1 of 3" in err.value.detail
    obj["symbol"] = "btc"
    obj["trades"][1]["side"] = "buy"
    with pytest.raises(RecordError) as err:
        decode(json.dumps(obj).encode())
    assert err.value.reason == "bad-symbol"

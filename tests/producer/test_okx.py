"""The OKX frame parser against real recorded messages and against garbage."""

import json
from pathlib import Path

import pytest

from gostream.producer import okx
from tests.okxsim.trades import RECORDING_2022, RECORDING_COUNT, REFERENCE_DIR

RAW_CAPTURE = REFERENCE_DIR / "cryptofeed-OKX.ws.1.0.log"
T0 = 1_700_000_000_000_000


def lines(path: Path) -> list[str]:
    assert path.exists(), f"reference recording missing: {path} (shared/reference/okx beside the repo)"
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_every_recorded_2022_push_parses_to_its_trade():
    pushes = lines(RECORDING_2022)
    assert len(pushes) == 69
    ids = []
    for text in pushes:
        raw = json.loads(text)["data"][0]
        frame = okx.parse_frame(text, T0)
        assert isinstance(frame, okx.Trades) and frame.rejected == ()
        (trade,) = frame.trades
        # Compared field by field with the raw JSON, converted independently here.
        assert trade.symbol == raw["instId"] == "BTC-USDT"
        assert trade.trade_id == int(raw["tradeId"])
        assert trade.price == float(raw["px"]) and trade.size == float(raw["sz"])
        assert trade.side == raw["side"] and trade.ts_ms == int(raw["ts"])
        assert trade.received_us == T0 and trade.count == 1
        ids.append(trade.trade_id)
    assert ids == list(range(338476307, 338476376))


def test_recorded_pushes_with_count_keep_it():
    frames = [okx.parse_frame(text, T0) for text in lines(RECORDING_COUNT)]
    trades = [t for f in frames for t in f.trades]
    assert [(t.trade_id, t.price, t.side, t.count) for t in trades] == [
        (674510826, 95634.9, "buy", 1),
        (674510827, 95635.3, "sell", 1),
    ]


def test_aggregated_push_count_is_parsed():
    text = json.dumps({"arg": {"channel": "trades", "instId": "BTC-USD"}, "data": [
        {"instId": "BTC-USD", "tradeId": "130639474", "px": "42219.9", "sz": "0.12060306", "side": "buy",
         "ts": "1630048897897", "count": "3"}]})
    (trade,) = okx.parse_frame(text, T0).trades
    assert trade.count == 3 and trade.trade_id == 130639474 and trade.symbol == "BTC-USD"


def test_raw_capture_messages_are_all_classified():
    """Every message OKX sent in the raw capture: trades parse, acks are acks, and the
    channels we do not use (books, tickers) are rejected as unknown, never raising."""
    kinds = {}
    for line in lines(RAW_CAPTURE):
        head, _, payload = line.partition(": ")
        if "<-" in head or "<->" in head or not payload:
            continue  # client messages and connection lines
        frame = okx.parse_frame(payload, T0)
        kinds[type(frame).__name__] = kinds.get(type(frame).__name__, 0) + 1
        if isinstance(frame, okx.Trades):
            assert frame.rejected == ()
    assert kinds["Trades"] == 74
    assert kinds["Subscribed"] == 18
    assert kinds["Rejected"] == 287 + 3 + 28  # book updates, snapshots, tickers


def test_subscribe_request_shape():
    assert json.loads(okx.subscribe_request("trades-all", ("BTC-USDT", "ETH-USDT"))) == {
        "op": "subscribe",
        "args": [{"channel": "trades-all", "instId": "BTC-USDT"}, {"channel": "trades-all", "instId": "ETH-USDT"}],
    }
    with pytest.raises(ValueError):
        okx.subscribe_request("books", ("BTC-USDT",))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("pong", okx.Pong()),
        ('{"event":"subscribe","arg":{"channel":"trades-all","instId":"BTC-USDT"},"connId":"a"}',
         okx.Subscribed("trades-all", "BTC-USDT")),
        ('{"event":"error","code":"60012","msg":"Invalid request"}', okx.ExchangeError("60012", "Invalid request")),
        ('{"event":"notice","code":"64008","msg":"upgrade"}', okx.Notice("64008", "upgrade")),
        ('{"event":"channel-conn-count","channel":"trades","connCount":"1"}', okx.OtherEvent("channel-conn-count")),
    ],
)
def test_events(text, expected):
    assert okx.parse_frame(text, T0) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "not-json"),
        ("ping", "not-json"),
        ("{", "not-json"),
        (b"\xff", "not-utf8"),
        ("[]", "not-object"),
        ("{}", "unknown-message"),
        ('{"arg":{"channel":"books"},"data":[]}', "unknown-channel"),
        ('{"arg":{"channel":"trades"},"data":{}}', "unknown-message"),
        ('{"event":7}', "bad-event"),
        # Each of these once raised out of parse_frame:
        ('{"event":"subscribe","arg":["trades-all"]}', "bad-arg"),  # AttributeError: list.get
        ('{"event":"subscribe","arg":"trades-all"}', "bad-arg"),
        ('{"event":"subscribe","arg":{"channel":{"a":1}}}', "bad-arg"),
        ('{"event":"error","code":{"a":1},"msg":"x"}', "bad-code"),
        ('{"event":"notice","code":"64008","msg":[1]}', "bad-msg"),
        ("[" * 100_000 + "]" * 100_000, "not-json"),  # RecursionError in json.loads
        ('{"arg":' + '{"a":' * 100_000 + "1" + "}" * 100_001, "not-json"),
        (b"[" * 100_000, "not-json"),
        ("1" * 5000, "not-json"),  # beyond int()'s digit limit: ValueError, as before
        (None, "not-text"),
    ],
)
def test_garbage_is_rejected_never_raised(text, reason):
    frame = okx.parse_frame(text, T0)
    assert isinstance(frame, okx.Rejected) and frame.reason == reason


GOOD_ITEM = {"instId": "BTC-USDT", "tradeId": "5", "px": "30236.5", "sz": "0.1", "side": "sell", "ts": "1652459224818"}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"px": "nan"}, "bad-price"),
        ({"px": "1e5"}, "bad-price"),
        ({"px": "-1"}, "bad-price"),
        ({"px": "0"}, "bad-price"),
        ({"px": 30236.5}, "bad-price"),
        ({"sz": "1.2.3"}, "bad-size"),
        ({"tradeId": "abc"}, "bad-trade_id"),
        ({"tradeId": "-5"}, "bad-trade_id"),
        ({"ts": "16524592248180000000000"}, "bad-ts"),
        ({"side": "short"}, "bad-side"),
        ({"instId": ""}, "bad-symbol"),
        ({"count": "0"}, "bad-count"),
        # Each of these once escaped as an exception (and stopped the producer) or as a
        # trade QuestDB could not take:
        ({"px": "."}, "bad-price"),  # float("."): ValueError
        ({"sz": "."}, "bad-size"),
        ({"px": ""}, "bad-price"),
        ({"px": "1."}, "bad-price"),
        ({"px": ".5"}, "bad-price"),
        ({"px": "٣"}, "bad-price"),
        ({"px": "9" * 31}, "bad-price"),
        ({"tradeId": "9223372036854775808"}, "bad-trade_id"),  # beyond QuestDB LONG
        ({"tradeId": "٣"}, "bad-trade_id"),
        ({"count": "2147483648"}, "bad-count"),  # beyond QuestDB INT
        ({"instId": "BTC-USDT\n"}, "bad-symbol"),
        ({"side": ["buy"]}, "bad-side"),
        ({"tradeId": 10**400}, "bad-trade_id"),
    ],
)
def test_a_bad_item_is_rejected_and_its_good_neighbours_kept(change, reason):
    bad = {**GOOD_ITEM, **change}
    text = json.dumps({"arg": {"channel": "trades-all", "instId": "BTC-USDT"}, "data": [GOOD_ITEM, bad, GOOD_ITEM]})
    frame = okx.parse_frame(text, T0)
    assert len(frame.trades) == 2 and frame.rejected == (reason,)


def test_a_lone_point_as_price_is_a_rejected_item_not_a_crash():
    """The regression: one item priced "." raised ValueError out of parse_frame and stopped
    the producer. Now it is one rejected item and its frame's other trades are kept."""
    bad = {**GOOD_ITEM, "tradeId": "6", "px": "."}
    after = {**GOOD_ITEM, "tradeId": "7"}
    frame = okx.parse_frame(json.dumps({"arg": {"channel": "trades-all"}, "data": [GOOD_ITEM, bad, after]}), T0)
    assert isinstance(frame, okx.Trades) and frame.rejected == ("bad-price",)
    assert [t.trade_id for t in frame.trades] == [5, 7]


def test_numeric_event_codes_are_text():
    assert okx.parse_frame('{"event":"error","code":60012,"msg":"Invalid request"}', T0) == okx.ExchangeError(
        "60012", "Invalid request")
    assert okx.parse_frame('{"event":"subscribe"}', T0) == okx.Subscribed("", "")


def test_the_largest_ids_a_questdb_row_takes_are_accepted():
    item = {**GOOD_ITEM, "tradeId": "9223372036854775807", "count": "2147483647"}
    (trade,) = okx.parse_frame(json.dumps({"arg": {"channel": "trades"}, "data": [item]}), T0).trades
    assert (trade.trade_id, trade.count) == (2**63 - 1, 2**31 - 1)


def test_missing_field_is_rejected():
    item = {k: v for k, v in GOOD_ITEM.items() if k != "px"}
    frame = okx.parse_frame(json.dumps({"arg": {"channel": "trades-all"}, "data": [item]}), T0)
    assert frame.trades == () and frame.rejected == ("missing-field",)


# -- REST history-trades --------------------------------------------------------
def history_body(data, code="0", msg="") -> str:
    return json.dumps({"code": code, "msg": msg, "data": data})


def test_a_history_page_of_recorded_trades_parses_newest_first():
    # The recorded pushes' items, as REST sends them: newest first, with "source".
    items = [{**json.loads(text)["data"][0], "source": "0"} for text in lines(RECORDING_2022)][::-1]
    result = okx.parse_history_page(history_body(items).encode(), T0)
    assert result.error is None and result.rejected == ()
    assert [t.trade_id for t in result.trades] == list(range(338476375, 338476306, -1))
    assert result.oldest_id == 338476307
    assert result.trades[0].received_us == T0 and result.trades[0].price == float(items[0]["px"])


def test_a_history_page_keeps_good_items_around_bad_ones_and_pages_past_all_of_them():
    items = [{**GOOD_ITEM, "tradeId": "12"}, {**GOOD_ITEM, "tradeId": "11", "px": "."},
             {**GOOD_ITEM, "tradeId": "10", "side": "short"}, "junk", {"tradeId": 3}, {"tradeId": "٣"},
             {**GOOD_ITEM, "tradeId": "9"}, {**GOOD_ITEM, "tradeId": "-1"}]
    result = okx.parse_history_page(history_body(items), T0)
    assert [t.trade_id for t in result.trades] == [12, 9]
    assert result.rejected == ("bad-price", "bad-side", "bad-item", "missing-field", "missing-field", "bad-trade_id")
    assert result.oldest_id == 9 and result.error is None
    # The oldest id counts rejected items too: paging goes on past a bad last item.
    result = okx.parse_history_page(history_body([{**GOOD_ITEM, "tradeId": "12"}, {**GOOD_ITEM, "tradeId": "8",
                                                                                    "px": "."}]), T0)
    assert [t.trade_id for t in result.trades] == [12] and result.oldest_id == 8


@pytest.mark.parametrize(
    "body, error",
    [
        (history_body([], code="50011", msg="Too Many Requests"), "okx code 50011: Too Many Requests"),
        (history_body([GOOD_ITEM], code="50000", msg="unknown path"), "okx code 50000: unknown path"),
        (history_body([GOOD_ITEM], code=0), "okx code 0: "),  # the code is a string, "0"
        (json.dumps({"msg": "", "data": [GOOD_ITEM]}), "okx code None: "),
        (history_body({"a": 1}), "data is not a list (dict)"),
        (json.dumps({"code": "0", "msg": ""}), "data is not a list (NoneType)"),
        ("[]", "not an object (list)"),
        ("<html>502 Bad Gateway</html>", "not JSON"),
        ("", "not JSON"),
        (b"\xff", "not utf-8"),
        ("[" * 100_000, "not JSON"),
        (None, "not text (NoneType)"),
    ],
)
def test_a_failed_history_answer_is_an_error_page(body, error):
    result = okx.parse_history_page(body, T0)
    assert result.error is not None and result.error.startswith(error)
    assert result.trades == () and result.rejected == () and result.oldest_id is None


def test_an_empty_history_page_is_no_error():
    assert okx.parse_history_page(history_body([]), T0) == okx.HistoryPage(())

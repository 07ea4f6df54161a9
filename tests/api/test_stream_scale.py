"""/stream as a shared dashboard needs it: resuming exactly with Last-Event-ID, trades that
fill a hole reaching the open streams, hundreds of streams without starving probes, a cap
beyond which streams get 503 with Retry-After, and no poller for a symbol without trades."""

from __future__ import annotations

import socket

from stack import components as c
from stack.process import Process
from tests.api.pipeline import get, insert_trade
from tests.api.sse import SSE, trade_ids
from tests.api.test_stream_correctness import exec_sql
from tests.conftest import TEST_PORTS, metric, spare_port, unique, wait_for

MINUTE = 1_704_344_400  # 2024-01-04 05:00:00 UTC


def insert_raw(symbol: str, trade_id: int, price: float, at_us: int, size: float = 0.5) -> None:
    exec_sql(f"INSERT INTO trades (symbol, side, trade_id, price, size, fills, received_at, timestamp) VALUES "
             f"('{symbol}', 'buy', {trade_id}, {price}, {size}, 1, {at_us}, {at_us})")


def test_a_stream_resumes_from_last_event_id_with_exactly_what_it_missed(api):
    symbol = unique("RSM") + "-USDT"
    insert_trade(symbol, 1, 100.0, 0.5, MINUTE + 1)
    first = SSE(TEST_PORTS.api, f"/stream?symbol={symbol}&interval=1m")
    try:
        first.until(lambda e, _: first.last_id is not None)  # the position it starts from
        insert_raw(symbol, 2, 101.0, (MINUTE + 2) * 1_000_000)
        first.until(lambda e, s: 2 in trade_ids(s) and first.last_id.endswith("-2"))
        position = first.last_id
    finally:
        first.close()
    # Missed while away: two trades in one millisecond, then one more.
    insert_raw(symbol, 3, 102.0, (MINUTE + 3) * 1_000_000)
    insert_raw(symbol, 4, 103.0, (MINUTE + 3) * 1_000_000)
    insert_raw(symbol, 5, 104.0, (MINUTE + 70) * 1_000_000)
    wait_for(lambda: get(TEST_PORTS.api, f"/trades?symbol={symbol}&limit=1")[1][0]["id"] == 5, 30,
             message="trade 5 stored")
    for how in ({"headers": {"Last-Event-ID": position}}, {"query": f"&last_event_id={position}"}):
        again = SSE(TEST_PORTS.api, f"/stream?symbol={symbol}&interval=1m{how.get('query', '')}", how.get("headers"))
        try:
            seen = again.until(lambda e, _: again.last_id is not None and e[0] == "comment")
        finally:
            again.close()
        assert trade_ids(seen) == [3, 4, 5]  # exactly the missed ones, in order, once
        # A bar may come twice (with the stream's start and with the feed's batch): the last counts.
        bars = {data["time"]: data for name, data in seen if name == "candle"}
        assert [(t, c["close"]) for t, c in sorted(bars.items())] == [(MINUTE, 103.0), (MINUTE + 60, 104.0)]
        assert bars[MINUTE]["volume"] == 2.0
        assert again.last_id.endswith("-5")


def test_a_bad_last_event_id_is_a_400(api):
    status, body = get(TEST_PORTS.api, "/stream?symbol=BTC-USDT&last_event_id=12x")
    assert status == 400 and "last_event_id" in body["error"]


def test_trades_filling_a_hole_reach_open_streams_and_their_bars(api):
    symbol = unique("HOL") + "-USDT"
    insert_trade(symbol, 1, 100.0, 0.5, MINUTE + 1)
    stream = SSE(TEST_PORTS.api, f"/stream?symbol={symbol}&interval=1m")
    try:
        stream.until(lambda e, _: stream.last_id is not None)
        insert_raw(symbol, 5, 105.0, (MINUTE + 130) * 1_000_000)  # ids 2..4 missing: a hole
        stream.until(lambda e, s: 5 in trade_ids(s))
        # The producer fills the hole later (REST): trades older than what the stream sent.
        for trade_id, second in ((2, 62), (3, 63), (4, 64)):
            insert_raw(symbol, trade_id, 90.0 + trade_id, (MINUTE + second) * 1_000_000, size=1.0)
        def filled(event, seen) -> bool:
            bars = [d for n, d in seen if n == "candle" and d["time"] == MINUTE + 60]
            return sorted(t["id"] for n, b in seen if n == "late" for t in b) == [2, 3, 4] and bool(bars) \
                and bars[-1]["volume"] == 3.0

        seen = stream.until(filled, timeout_s=30)
        assert sorted(t["id"] for name, batch in seen if name == "late" for t in batch) == [2, 3, 4]
        bar = [data for name, data in seen if name == "candle" and data["time"] == MINUTE + 60][-1]
        assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"]) == (92.0, 94.0, 92.0, 94.0, 3.0)
        assert 2 not in trade_ids(seen)  # late trades never pose as new ones (the last price stays)
    finally:
        stream.close()


def test_a_hole_in_the_audit_ledger_is_watched_by_a_new_feed(api):
    symbol = unique("LDG") + "-USDT"
    insert_trade(symbol, 1, 100.0, 0.5, MINUTE + 1)
    insert_trade(symbol, 9, 109.0, 0.5, MINUTE + 200)
    base = MINUTE * 1_000_000
    exec_sql("INSERT INTO trade_holes (symbol, first_id, last_id, missing, state, attempts, detail, after_time, "
             f"before_time, updated_at, next_attempt_at, closed_at, found_at) VALUES ('{symbol}', 2, 8, 7, 'open', 0, "
             f"'', {base + 1_000_000}, {base + 200_000_000}, {base}, {base}, null, {base + 300_000_000})")
    wait_for(lambda: get(TEST_PORTS.api, f"/completeness?symbol={symbol}")[1]["ledger"]["open"] == 1, 30,
             message="the ledger row")
    stream = SSE(TEST_PORTS.api, f"/stream?symbol={symbol}&interval=1h")
    try:
        stream.until(lambda e, _: stream.last_id is not None)
        insert_raw(symbol, 4, 104.0, base + 100_000_000)
        seen = stream.until(lambda e, _: e[0] == "late", timeout_s=40)  # its bars come with it
        assert [t["id"] for name, batch in seen if name == "late" for t in batch] == [4]
        hour = MINUTE // 3600 * 3600
        assert [d["high"] for n, d in seen if n == "candle" and d["time"] == hour][-1] == 109.0
    finally:
        stream.close()


def _open_stream(port: int, path: str) -> tuple[socket.socket, str]:
    """A raw stream connection and its status line (the rest is left unread)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head.decode(errors="replace")


def test_hundreds_of_streams_leave_probes_and_candles_answering_and_the_cap_answers_503(api, stack_dir):
    symbol = unique("CAP") + "-USDT"
    insert_trade(symbol, 1, 100.0, 0.5, MINUTE + 1)
    port = spare_port()
    ports = c.Ports(api=port, questdb_pg=TEST_PORTS.questdb_pg, questdb_http=TEST_PORTS.questdb_http)
    env = c.service_env(ports, LOG_LEVEL="INFO", STREAM_MAX="300", STREAM_KEEPALIVE_S="1", STREAM_POLL_MS="100")
    process = Process(c.api(ports, env), stack_dir / "logs" / "api-cap").start().wait_ready(60)
    streams: list[socket.socket] = []
    try:
        # More streams than the 64 threads a worker had: each used to hold one.
        for _ in range(300):
            sock, head = _open_stream(port, f"/stream?symbol={symbol}&interval=1m")
            assert head.startswith("HTTP/1.1 200"), head
            streams.append(sock)
        wait_for(lambda: metric(port, "gostream_api_open_streams") == 300, 30, message="300 open streams")
        assert metric(port, "gostream_api_stream_feeds") == 1  # one poller for all of them
        for path in ("/healthz", "/readyz", f"/candles?symbol={symbol}"):
            status, _ = get(port, path)
            assert status == 200, path
        sock, head = _open_stream(port, f"/stream?symbol={symbol}")
        sock.close()
        assert head.startswith("HTTP/1.1 503"), head
        retry = [line for line in head.split("\r\n") if line.lower().startswith("retry-after:")]
        assert retry and 1 <= int(retry[0].split(":")[1]) <= 60
        assert metric(port, "gostream_api_streams_refused_total") == 1
        # A stream ending frees its place.
        streams.pop().close()
        wait_for(lambda: metric(port, "gostream_api_open_streams") == 299, 30, message="a stream closed")
        sock, head = _open_stream(port, f"/stream?symbol={symbol}")
        streams.append(sock)
        assert head.startswith("HTTP/1.1 200"), head
    finally:
        for sock in streams:
            sock.close()
        process.stop()
    assert "Traceback" not in process.tail(300)


def test_a_symbol_without_trades_gets_no_poller_until_it_has_some(api, stack_dir):
    symbol = unique("NEW") + "-USDT"
    port = spare_port()
    ports = c.Ports(api=port, questdb_pg=TEST_PORTS.questdb_pg, questdb_http=TEST_PORTS.questdb_http)
    env = c.service_env(ports, LOG_LEVEL="INFO", STREAM_KEEPALIVE_S="1")
    process = Process(c.api(ports, env), stack_dir / "logs" / "api-waiting").start().wait_ready(60)
    try:
        waiting = [SSE(port, f"/stream?symbol={symbol}&interval=1m") for _ in range(3)]
        for stream in waiting:
            stream.until(lambda e, _: e[0] == "comment")
        assert metric(port, "gostream_api_open_streams") == 3
        assert metric(port, "gostream_api_stream_feeds") == 0
        insert_trade(symbol, 1, 100.0, 0.5, MINUTE + 1)
        for stream in waiting:  # told to load again: now there is something to load
            stream.until(lambda e, _: e[0] == "reload")
            stream.close()
        live = SSE(port, f"/stream?symbol={symbol}&interval=1m")
        try:
            live.until(lambda e, _: e[0] == "candle" and e[1]["close"] == 100.0)
            assert metric(port, "gostream_api_stream_feeds") == 1
        finally:
            live.close()
    finally:
        process.stop()

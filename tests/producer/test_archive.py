"""Importing OKX's daily trade archives: files made here in OKX's format (zip + CSV: 6 columns,
7 with ``source``, bilingual and Chinese-only headers, a SWAP file, a BOM, CRLF, bad rows of
every kind), read from paths, a directory and a URL served on 127.0.0.1, sent through a real
Kafka to a real consumer, and compared in QuestDB with what the files say."""

from __future__ import annotations

import functools
import http.server
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gostream.common.trade import RecordError, Trade, decode
from gostream.producer import archive
from tests.conftest import TEST_PORTS, metric, read_topic, spare_port, sql, unique, wait_for

HEADER6 = "instrument_name,trade_id,side,price,size,created_time"
HEADER7 = HEADER6 + ",source"
# An older file's bilingual header, columns in another order than the standard one.
BILINGUAL = "trade_id/成交id,instrument_name/交易对,side/方向,created_time/成交时间,price/价格,size/数量"
CHINESE = "交易对,成交id,方向,价格,数量,成交时间"
DAY_MS = 1_704_038_400_000  # 2024-01-01 00:00 UTC+8


def zip_csv(path: Path, body: bytes) -> Path:
    """A zip holding one CSV, as OKX serves them."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(path.stem + ".csv", body)
    return path


def trades(symbol: str, n: int, first_id: int, seed: int, swap: bool = False) -> list[dict]:
    """Valid rows as OKX writes them (text), in file order."""
    rows = []
    for i in range(n):
        price = f"{40000 + (seed * 7 + i * 13) % 900}.{(i * 37) % 10}"
        size = str(1 + (i * 3) % 50) if swap else f"0.{(i * 7919) % 100000 + 1:05d}"
        rows.append({"symbol": symbol, "trade_id": str(first_id + i), "side": ("buy", "sell")[(i + seed) % 2],
                     "price": price, "size": size, "ts": str(DAY_MS + seed * 1000 + i * 37)})
    return rows


def line(row: dict, order=("symbol", "trade_id", "side", "price", "size", "ts"), extra=()) -> str:
    return ",".join([row[k] for k in order] + list(extra))


def expected(rows: list[dict]) -> list[dict]:
    def iso(ms: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}000Z"

    return sorted(({"trade_id": int(r["trade_id"]), "price": float(r["price"]), "size": float(r["size"]),
                    "side": r["side"], "fills": 1, "timestamp": iso(int(r["ts"]))} for r in rows),
                  key=lambda r: r["trade_id"])


def stored(symbol: str) -> list[dict]:
    return sql(f"select trade_id, price, size, side, fills, timestamp from trades where symbol = '{symbol}' "
               f"order by trade_id")


def received(symbol: str) -> tuple[datetime, datetime]:
    row = sql(f"select min(received_at) lo, max(received_at) hi from trades where symbol = '{symbol}'")[0]
    return tuple(datetime.fromisoformat(row[k].replace("Z", "+00:00")) for k in ("lo", "hi"))


def count(symbols) -> int:
    names = ",".join(f"'{s}'" for s in symbols)
    return sql(f"select count() n from trades where symbol in ({names})")[0]["n"]


def run(*args: str, topic: str = "trades", bootstrap: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap or f"127.0.0.1:{TEST_PORTS.kafka}",
           "KAFKA_TOPIC": topic, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "gostream.producer.archive", *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def http_dir(tmp_path):
    """A directory served over HTTP on 127.0.0.1 (a local stand-in for OKX's CDN)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", spare_port()),
                                             functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Files:
    """The test's archive files and what each row of them must become."""

    def __init__(self, root: Path, served: Path) -> None:
        prefix = unique("AR")
        self.spot, self.eth, self.old, self.swap = (f"{prefix}A-USDT", f"{prefix}B-USDT", f"{prefix}C-USDT",
                                                    f"{prefix}D-USD-SWAP")
        self.symbols = (self.spot, self.eth, self.old, self.swap)
        self.valid: dict[str, list[dict]] = {}
        self.rejected: dict[str, int] = {}
        local = root / "archives"
        local.mkdir()

        # 1. 6 columns, BOM, CRLF, 1,234 trades and bad rows of every kind.
        good = trades(self.spot, 1234, first_id=500_000_001, seed=1)
        s = self.spot
        bad = [
            (f"{s},,buy,40000.1,0.1,{DAY_MS}", "bad-trade_id"),  # empty fields, one at a time
            (f"{s},900000001,buy,,0.1,{DAY_MS}", "bad-price"),
            (f"{s},900000002,buy,40000.1,,{DAY_MS}", "bad-size"),
            (f"{s},900000003,,40000.1,0.1,{DAY_MS}", "bad-side"),
            (f"{s},900000004,buy,40000.1,0.1,", "bad-ts"),
            (f",900000005,buy,40000.1,0.1,{DAY_MS}", "bad-symbol"),
            (f"{s},900000006,buy,.,0.1,{DAY_MS}", "bad-price"),  # "."
            (f"{s},900000007,sell,40000.1,.,{DAY_MS}", "bad-size"),
            (f"{s},900000008,buy,abc,0.1,{DAY_MS}", "bad-price"),  # text in numbers
            (f"{s},9000x0009,buy,40000.1,0.1,{DAY_MS}", "bad-trade_id"),
            (f"{s},900000010,buy,40000.1,1e-5,{DAY_MS}", "bad-size"),
            (f"{s},900000011,buy,40000.1,0.1,2024-01-01 00:00:00", "bad-ts"),
            (f"{s},900000012,buy,NaN,0.1,{DAY_MS}", "bad-price"),
            (f"{s},-900000013,buy,40000.1,0.1,{DAY_MS}", "bad-trade_id"),
            (f"{s},900000014,BUY,40000.1,0.1,{DAY_MS}", "bad-side"),  # wrong side
            (f"{s},900000015,long,40000.1,0.1,{DAY_MS}", "bad-side"),
            (f"{s},900000016,buy,0,0.1,{DAY_MS}", "bad-price"),  # zero
            (f"{s},900000017,buy,40000.1,0.1,123", "bad-ts"),  # not a plausible time
            (f"{s},900000018,buy,40000.1", "missing-columns"),
            (f"{s}", "missing-columns"),
            (f"{s},900000019,buy,40000.1,0.1,{DAY_MS},extra", "extra-columns"),
            (f"{s},900000020,buy,40000.1,0.1,{DAY_MS},", "extra-columns"),  # a trailing comma
            ("", "empty-row"),
            (f"{s}\x00,900000021,buy,40000.1,0.1,{DAY_MS}", "bad-symbol"),
            ("x" * 70_000, "too-long"),
        ]
        body = [HEADER6] + [line(r) for r in good[:600]] + [b for b, _ in bad] + [line(r) for r in good[600:]]
        # A quoted row is still a trade.
        quoted = trades(s, 1, first_id=500_100_000, seed=9)[0]
        body.append(",".join(f'"{quoted[k]}"' for k in ("symbol", "trade_id", "side", "price", "size", "ts")))
        raw = "\ufeff".encode() + "\r\n".join(body).encode() + b"\r\n"
        # Bytes that are not UTF-8 in a price.
        raw += f"{s},900000022,buy,4\xff0000.1,0.1,{DAY_MS}\r\n".encode("latin-1")
        bad.append(("", "bad-price"))
        self.file_spot = zip_csv(local / f"{s}-trades-2024-01-01.zip", raw)
        self.valid[s] = good + [quoted]

        # 2. 7 columns (with source), LF, served over HTTP.
        eth = trades(self.eth, 700, first_id=7_000_001, seed=2)
        body = [HEADER7] + [line(r, extra=("0",)) for r in eth]
        body.insert(100, f"{self.eth},7999999,sell,2300.5,0.1,{DAY_MS}")  # 6 cells in a 7-column file
        bad.append(("", "missing-columns"))
        zip_csv(served / f"{self.eth}-trades-2024-01-01.zip", ("\n".join(body) + "\n").encode())
        self.valid[self.eth] = eth
        self.url_name = f"{self.eth}-trades-2024-01-01.zip"

        # 3. A bilingual header, its columns in another order.
        old = trades(self.old, 300, first_id=123_001, seed=3)
        order = ("trade_id", "symbol", "side", "ts", "price", "size")
        body = [BILINGUAL] + [line(r, order=order) for r in old]
        zip_csv(local / f"{self.old}-trades-2021-06-01.zip", ("\n".join(body) + "\n").encode())
        self.valid[self.old] = old

        # 4. A SWAP file, sizes in contracts, a Chinese-only header (the standard order).
        swap = trades(self.swap, 250, first_id=88_000_001, seed=4, swap=True)
        body = [CHINESE] + [line(r) for r in swap]
        zip_csv(local / f"{self.swap}-trades-2024-01-01.zip", ("\n".join(body) + "\n").encode())
        self.valid[self.swap] = swap

        for _, reason in bad:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.local = local
        self.total = sum(len(v) for v in self.valid.values())


def test_archives_are_imported_through_kafka_exactly_once(tmp_path, http_dir, topic, services):
    served, base = http_dir
    files = Files(tmp_path, served)
    services.start("consumer", topic)
    url = f"{base}/{files.url_name}"

    started = datetime.now().astimezone()
    first = run(str(files.local), url, "--batch", "100", "--progress", "always", topic=topic)
    finished = datetime.now().astimezone()
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    print(out)
    assert "files: 4 read, 0 failed, 0 skipped (other symbols)" in out
    rows = files.total + sum(files.rejected.values())
    assert f"trades: {files.total:,} sent to Kafka topic '{topic}' at 127.0.0.1:{TEST_PORTS.kafka}, " \
           f"{files.total:,} acknowledged" in out
    assert f"; {sum(files.rejected.values()):,} rejected;" in out
    assert "rejected by reason: " + ", ".join(f"{r} {n:,}" for r, n in sorted(files.rejected.items())) in out
    for symbol, valid in files.valid.items():
        ids = sorted(int(r["trade_id"]) for r in valid)
        assert f"  {symbol}: {len(valid):,} trades, ids {ids[0]} .. {ids[-1]}, " in out
    # The progress: a download bar for the URL, then the import's bar with trades/s and ETA.
    err = first.stderr
    assert f"download {files.url_name}" in err
    assert "import: 100%|" in err and f"{files.total:,} trades, " in err and " trades/s]" in err
    assert "<00:00" in err  # the ETA field
    # Each rejected row is logged with its file, line and reason (a few per reason and file).
    logged = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert {(e["reason"]) for e in logged if e["message"].startswith("row rejected")} == set(files.rejected)
    assert any(e.get("line") == 1 + 600 + 1 and e["reason"] == "bad-trade_id" for e in logged)

    wait_for(lambda: count(files.symbols) == files.total, timeout_s=60, message=f"{files.total} trades stored")
    for symbol, valid in files.valid.items():
        assert stored(symbol) == expected(valid), symbol
        lo, hi = received(symbol)
        assert started <= lo <= hi <= finished  # received = the import's time
    written = metric(TEST_PORTS.consumer, "gostream_consumer_rows_written_total")
    assert written == files.total
    # The records are the producer's: keyed by symbol, codec v2, at most --batch trades.
    records = read_topic(topic)
    assert all(len(decode(r.value)) <= 100 and r.key == decode(r.value)[0].symbol.encode() for r in records)
    assert sum(len(decode(r.value)) for r in records) == files.total

    # Again: everything is sent and written again, and nothing new is stored. No TTY: no bar.
    second = run(str(files.local), url, "--json", topic=topic)
    assert second.returncode == 0, second.stdout + second.stderr
    summary = json.loads(second.stdout)
    assert (summary["files"], summary["failed"], summary["trades_sent"], summary["trades_acked"]) == \
           (4, {}, files.total, files.total)
    assert summary["rejected"] == files.rejected
    assert summary["rows"] == rows
    assert {s: (v["trades"], v["first_id"], v["last_id"]) for s, v in summary["symbols"].items()} == {
        s: (len(v), min(int(r["trade_id"]) for r in v), max(int(r["trade_id"]) for r in v))
        for s, v in files.valid.items()}
    assert "%|" not in second.stderr and "trades/s" not in second.stderr
    wait_for(lambda: metric(TEST_PORTS.consumer, "gostream_consumer_rows_written_total") == 2 * files.total,
             timeout_s=60, message="the second import written")
    assert count(files.symbols) == files.total
    for symbol, valid in files.valid.items():
        assert stored(symbol) == expected(valid), symbol
    print(f"throughput: {summary['trades_sent'] / summary['seconds']:,.0f} trades/s importing "
          f"{summary['trades_sent']} trades (through Kafka, acks awaited)")


def test_symbols_filter_and_dry_run_send_nothing(tmp_path, http_dir, topic):
    served, base = http_dir
    files = Files(tmp_path, served)
    other_name = tmp_path / "renamed.zip"  # not an OKX name: read, and its rows filtered
    other_name.write_bytes(files.file_spot.read_bytes())
    result = run(str(files.local), f"{base}/{files.url_name}", str(other_name),
                 "--symbols", f"{files.eth},{files.old}", "--dry-run", "--json", topic=topic)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    # The spot and swap files are skipped by their names; the renamed one is read and filtered.
    assert sorted(Path(p).name for p in summary["skipped_files"]) == sorted(
        [files.file_spot.name, f"{files.swap}-trades-2024-01-01.zip"])
    assert summary["files"] == 3
    assert summary["trades_sent"] == len(files.valid[files.eth]) + len(files.valid[files.old])
    assert summary["trades_acked"] == 0 and summary["dry_run"]
    assert set(summary["symbols"]) == {files.eth, files.old}
    # Rows of 6 cells naming another symbol are skipped unparsed (20 bad ones among them);
    # rows of another width are still rejected (and the 7-column file's row of 6).
    assert summary["skipped_rows"] == len(files.valid[files.spot]) + 20
    assert summary["rejected"] == {"missing-columns": 3, "extra-columns": 2, "empty-row": 1, "too-long": 1}
    assert read_topic(topic) == []


def test_unreadable_files_are_reported_and_the_others_imported(tmp_path, http_dir):
    served, base = http_dir
    symbol = unique("AF") + "-USDT"
    good = zip_csv(tmp_path / f"{symbol}-trades-2024-01-01.zip",
                   ("\n".join([HEADER6] + [line(r) for r in trades(symbol, 10, 1, 5)]) + "\n").encode())
    not_zip = tmp_path / "broken.zip"
    not_zip.write_bytes(b"PK\x03\x04 this is no zip")
    no_header = zip_csv(tmp_path / "odd.zip", b"a,b,c\n1,2,3\n")
    plain = tmp_path / "plain.csv"  # an unzipped CSV is read too
    plain.write_text("\n".join([HEADER6] + [line(r) for r in trades(symbol, 5, 100, 6)]) + "\n")
    missing = tmp_path / "nowhere.zip"
    result = run(str(good), str(not_zip), str(no_header), str(missing), str(plain), f"{base}/gone.zip",
                 "--dry-run", "--json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["files"] == 2 and summary["trades_sent"] == 15
    failed = {Path(k).name: v for k, v in summary["failed"].items()}
    assert set(failed) == {"broken.zip", "odd.zip", "nowhere.zip", "gone.zip"}
    assert failed["broken.zip"] == "not a zip file"
    assert failed["odd.zip"].startswith("header not understood: 'a,b,c'")
    assert failed["nowhere.zip"] == "no such file"
    assert failed["gone.zip"].startswith("download failed: HTTP 404")


def test_kafka_failures_are_clear_errors(tmp_path, kafka):
    symbol = unique("AK") + "-USDT"
    path = zip_csv(tmp_path / "a.zip", ("\n".join([HEADER6] + [line(r) for r in trades(symbol, 10, 1, 5)])).encode())
    nobody = f"127.0.0.1:{spare_port()}"
    down = run(str(path), "--timeout", "2", bootstrap=nobody)
    assert down.returncode == 1
    assert f"ERROR: Kafka at {nobody} not reachable" in down.stdout
    assert "0 acknowledged" in down.stdout

    absent = unique("no-such-topic-")
    missing = run(str(path), "--timeout", "2", topic=absent)
    assert missing.returncode == 1
    assert f"ERROR: Kafka topic '{absent}' not found at 127.0.0.1:{TEST_PORTS.kafka}" in missing.stdout


def test_a_big_file_is_streamed_not_loaded(tmp_path, capsys, topic, services):
    """An archive far bigger than what the import may hold in memory, read in a dry run under
    tracemalloc, then imported through Kafka and the consumer."""
    symbol = unique("AB") + "-USDT"
    n = 100_000
    body = io.StringIO()
    body.write(HEADER7 + "\n")
    for i in range(n):
        body.write(f"{symbol},{i + 1},{('buy', 'sell')[i % 2]},{30000 + i % 1000}.5,0.{i % 9 + 1},{DAY_MS + i},0\n")
    text = body.getvalue().encode()
    path = zip_csv(tmp_path / f"{symbol}-trades-2024-01-01.zip", text)
    del body
    handlers = logging.getLogger().handlers[:]
    tracemalloc.start()
    try:
        code = archive.main([str(path), "--dry-run", "--json", "--progress", "never"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        logging.getLogger().handlers[:] = handlers
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trades_sent"] == n and summary["symbols"][symbol]["last_id"] == n
    print(f"{len(text) / 1e6:.1f} MB of CSV, peak {peak / 1e6:.2f} MB traced")
    assert peak < len(text) / 4

    services.start("consumer", topic)
    result = run(str(path), "--json", topic=topic)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["trades_acked"] == n
    wait_for(lambda: count([symbol]) == n, timeout_s=120, message=f"{n} trades stored")
    assert sql(f"select min(trade_id) lo, max(trade_id) hi, sum(fills) f from trades where symbol = '{symbol}'") == [
        {"lo": 1, "hi": n, "f": n}]
    with capsys.disabled():
        print(f"\nthroughput: {n / summary['seconds']:,.0f} trades/s importing {n:,} trades into Kafka "
              f"(acks awaited, consumer running)")


# -- the row parser: total ---------------------------------------------------------------
GOOD = ["BTC-USDT", "338476307", "buy", "30236.5", "0.0002", "1652459224818"]
RECEIVED = 1_700_000_000_123_456


def test_a_good_row_in_every_shape():
    six = archive.Columns()
    want = Trade("BTC-USDT", 338476307, 30236.5, 0.0002, "buy", 1652459224818, RECEIVED, 1)
    assert archive.parse_line(",".join(GOOD) + "\r\n", six, RECEIVED) == want
    assert archive.parse_line(",".join(GOOD + ["1"]), archive.Columns(width=7), RECEIVED) == want
    bilingual = archive.header_columns(BILINGUAL.split(","))
    assert bilingual == archive.Columns(symbol=1, trade_id=0, side=2, ts=3, price=4, size=5, width=6)
    assert archive.header_columns(["交易对instrument_name", "trade_id", "side", "price", "size", "created_time",
                                   "来源/source"]) == archive.Columns(width=7)
    assert archive.header_columns(CHINESE.split(",")) == six
    assert archive.header_columns(["instId", "tradeId", "px", "sz", "side", "ts"]) == archive.Columns(
        side=4, price=2, size=3)
    assert archive.header_columns(["a", "b", "c"]) is None


ROW_REASONS = {"bad-symbol", "bad-trade_id", "bad-price", "bad-size", "bad-side", "bad-ts", "missing-columns",
               "extra-columns", "empty-row", "bad-csv"}


@settings(max_examples=500, deadline=None)
@given(cells=st.lists(st.text(), min_size=0, max_size=9), width=st.sampled_from([6, 7]))
@example(cells=GOOD[:1], width=6)
@example(cells=["", "", "", "", "", ""], width=6)
@example(cells=[".", ".", ".", ".", ".", "."], width=6)
@example(cells=["BTC-USDT", "9" * 30, "buy", "1" * 40, "1", "1"], width=6)
def test_the_row_parser_never_raises(cells, width):
    columns = archive.Columns(width=width)
    for attempt in (lambda: archive.parse_row(cells, columns, RECEIVED),
                    lambda: archive.parse_line(",".join(cells), columns, RECEIVED)):
        try:
            trade = attempt()
        except RecordError as exc:
            assert exc.reason in ROW_REASONS
        else:
            assert isinstance(trade, Trade) and trade.count == 1 and trade.received_us == RECEIVED
    archive.header_columns(cells)  # never raises either


@settings(max_examples=300, deadline=None)
@given(column=st.integers(0, 5), value=st.text())
def test_one_bad_column_costs_only_its_row_and_names_its_field(column, value):
    cells = list(GOOD)
    cells[column] = value
    try:
        trade = archive.parse_row(cells, archive.Columns(), RECEIVED)
    except RecordError as exc:
        assert exc.reason == "bad-" + archive.STANDARD[column]
    else:  # only what OKX could have printed is taken, and as it is
        want = [GOOD[0], 338476307, "buy", 30236.5, 0.0002, 1652459224818]
        want[column] = {1: int, 3: float, 4: float, 5: int}.get(column, str)(value)
        assert [trade.symbol, trade.trade_id, trade.side, trade.price, trade.size, trade.ts_ms] == want
        assert value.isascii() and value == value.strip()
        if column in (1, 5):
            assert value.isdigit()
        if column in (3, 4):
            assert value.replace(".", "", 1).isdigit() and not value.startswith(".") and not value.endswith(".")


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2000) | st.lists(st.sampled_from(
    [HEADER6, HEADER7, BILINGUAL, ",".join(GOOD), "", '"', "\r", "\ufeff", "a,b", "\x00", "é,,,,,"]),
    max_size=12).map(lambda parts: "\n".join(parts).encode()))
def test_any_file_is_read_without_an_exception_but_a_file_error(data):
    importer = archive.Importer(archive.DrySink(), None, 500, progress=False)
    with archive._bar(False) as bar:
        try:
            importer._read_stream("fuzz", io.BytesIO(data), bar)
        except archive.FileError as exc:
            assert str(exc).startswith("header not understood")
    assert importer.summary.trades + sum(importer.summary.rejected.values()) == importer.summary.rows

"""python -m gostream.producer.archive: OKX's daily trade archives -> Kafka, like every trade.

OKX publishes one file of trades per instrument and day (REST ``public/market-data-history``,
module 1; days in UTC+8): a zip holding one CSV with the header
``instrument_name,trade_id,side,price,size,created_time`` (``created_time`` in ms), a 7th
column ``source`` in newer files, and in some older files bilingual headers
(``instrument_name/交易对``, or only the Chinese label). SWAP sizes are in contracts and are
stored as sent.

Each file (a path, a directory of them, or an http/https URL) is streamed (zipfile, one line at
a time; a busy pair is millions of rows a day) and every row goes through a total parser: a bad
row is rejected, counted by reason and logged, never fatal; the others are kept. The trades go
to the same topic, with the same key (the symbol) and record codec (version 2: up to
``--batch`` trades of one symbol) as the producer's, so the consumer stores them and
QuestDB's DEDUP makes a second import of the same file harmless. Kafka's acks (``acks=all``,
idempotent) are waited for before success is reported; a Kafka failure is an error and a
non-zero exit.

    python -m gostream.producer.archive BTC-USDT-trades-2024-01-01.zip ./archives/ \\
        https://example.org/ETH-USDT-trades-2024-01-01.zip --symbols BTC-USDT,ETH-USDT

Exit status: 0 every file read and every trade acknowledged (rejected rows are counted, not
failures); 1 a file could not be read or Kafka failed; 2 bad arguments or settings.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gostream.common.logs import JsonFormatter
from gostream.common.settings import KafkaSettings, SettingsError, kafka_client_config, load
from gostream.common.trade import RecordError, Trade, encode_batch, show, validate

log = logging.getLogger("gostream.producer.archive")

# The columns of OKX's files, in their standard order; a 7th, ``source``, is not stored.
STANDARD = ("symbol", "trade_id", "side", "price", "size", "ts")
# The English names recognised inside a header cell (``instrument_name/交易对`` included),
# and the v5 API's names for the same fields.
NAMES = {
    "instrument_name": "symbol", "instid": "symbol", "inst_id": "symbol",
    "trade_id": "trade_id", "tradeid": "trade_id",
    "side": "side",
    "price": "price", "px": "price",
    "size": "size", "sz": "size",
    "created_time": "ts", "ts": "ts",
    "source": "source",
}
_WORDS = re.compile(r"[a-z]+(?:[ _][a-z]+)*")
# What OKX prints (the same rules as okx.py): ASCII digits; decimals with at most one point,
# digits on both sides. float() takes much more ("1e5", "nan", " 1", "1_0", "٣").
_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,30}(\.[0-9]{1,30})?", re.ASCII)
# OKX's own file names: <instrument>-trades-<yyyy-mm-dd>.zip
_FILE_SYMBOL = re.compile(r"^([A-Z0-9]+(?:-[A-Z0-9]+)+)-trades-\d{4}-\d{2}-\d{2}\.(?:zip|csv)$")
MAX_LINE = 64 * 1024  # a longer line is no trade: rejected without holding it in memory
LOGGED_PER_REASON = 5  # rejected rows logged per file and reason; all are counted


class FileError(Exception):
    """A file (or URL) that cannot be read at all; the import goes on with the others."""


class KafkaFailure(Exception):
    """Kafka refused or did not acknowledge: the import stops."""


@dataclass(frozen=True)
class Columns:
    """Where each field is in a row, and how many cells a row has."""

    symbol: int = 0
    trade_id: int = 1
    side: int = 2
    price: int = 3
    size: int = 4
    ts: int = 5
    width: int = 6


def header_columns(cells: Sequence[str]) -> Columns | None:
    """The columns a header names: each cell is searched for one of the English names (so
    ``instrument_name/交易对`` and ``成交时间(created_time)`` are understood); a header of 6
    or 7 cells whose names are not all found is taken as the standard order. None: neither."""
    found: dict[str, int] = {}
    duplicate = False
    for index, cell in enumerate(cells):
        names = {NAMES[w.replace(" ", "_")] for w in _WORDS.findall(cell.lower()) if w.replace(" ", "_") in NAMES}
        if len(names) != 1:
            continue
        (name,) = names
        duplicate |= name in found
        found[name] = index
    if not duplicate and all(name in found for name in STANDARD):
        return Columns(**{name: found[name] for name in STANDARD}, width=len(cells))
    if len(cells) in (6, 7):
        return Columns(width=len(cells))
    return None


def split_line(line: str) -> list[str]:
    """The cells of one CSV line (quotes understood, a line is always one row)."""
    line = line.rstrip("\r\n")
    if '"' not in line:
        return line.split(",")
    try:
        rows = list(csv.reader([line]))
    except csv.Error as exc:
        raise RecordError("bad-csv", str(exc)[:80]) from None
    return rows[0] if rows else [""]


def parse_row(cells: Sequence[str], columns: Columns, received_us: int) -> Trade:
    """One data row as a Trade. Raises RecordError, and nothing else, for anything that is
    not a valid trade; ``reason`` is short and stable (okx.py's names where they match)."""
    if len(cells) != columns.width:
        if len(cells) == 1 and not cells[0].strip():
            raise RecordError("empty-row")
        reason = "missing-columns" if len(cells) < columns.width else "extra-columns"
        raise RecordError(reason, f"{len(cells)} cells, expected {columns.width}")
    trade = Trade(
        symbol=cells[columns.symbol],
        trade_id=_digits(cells[columns.trade_id], "trade_id"),
        price=_decimal(cells[columns.price], "price"),
        size=_decimal(cells[columns.size], "size"),
        side=cells[columns.side],
        ts_ms=_digits(cells[columns.ts], "ts"),
        received_us=received_us,
        count=1,
    )
    return validate(trade)


def parse_line(line: str, columns: Columns, received_us: int) -> Trade:
    """``split_line`` then ``parse_row``: raises RecordError only."""
    return parse_row(split_line(line), columns, received_us)


def _digits(value: str, name: str) -> int:
    if not _DIGITS.fullmatch(value):
        raise RecordError(f"bad-{name}", show(value))
    return int(value)


def _decimal(value: str, name: str) -> float:
    if not _DECIMAL.fullmatch(value):
        raise RecordError(f"bad-{name}", show(value))
    return float(value)


# -- where the files come from -------------------------------------------------------------
def is_url(arg: str) -> bool:
    return urllib.parse.urlsplit(arg).scheme in ("http", "https")


def expand(args: Sequence[str]) -> list[str]:
    """Paths and URLs as given; a directory becomes its .zip and .csv files (recursively,
    sorted). A path that does not exist stays, to be reported as a failed file."""
    found: list[str] = []
    for arg in args:
        if not is_url(arg) and os.path.isdir(arg):
            found += sorted(str(p) for p in Path(arg).rglob("*")
                            if p.is_file() and p.suffix.lower() in (".zip", ".csv"))
        else:
            found.append(arg)
    return found


def download(url: str, directory: str, timeout_s: float, progress: bool) -> str:
    """The URL's body, streamed into a file in ``directory``."""
    name = os.path.basename(urllib.parse.urlsplit(url).path) or "download"
    target = os.path.join(directory, f"{len(os.listdir(directory))}-{name}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with _bar(progress, total=total, unit="B", unit_scale=True, desc=f"download {name}") as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise FileError(f"download failed: HTTP {exc.code} {exc.reason}") from None
    except (OSError, ValueError) as exc:  # URLError, timeouts, a bad Content-Length
        raise FileError(f"download failed: {exc}") from None
    return target


def members(path: str) -> list[tuple[str, int]]:
    """(CSV name, uncompressed size) of a zip's CSVs, or [("", size)] for a plain CSV file."""
    if not os.path.isfile(path):
        raise FileError("no such file" if not os.path.exists(path) else "not a file")
    try:
        if not zipfile.is_zipfile(path):
            if path.lower().endswith(".zip"):
                raise FileError("not a zip file")
            return [("", os.path.getsize(path))]
        with zipfile.ZipFile(path) as archive:
            found = [(i.filename, i.file_size) for i in archive.infolist()
                     if not i.is_dir() and i.filename.lower().endswith(".csv")]
    except (OSError, zipfile.BadZipFile) as exc:
        raise FileError(str(exc)) from None
    if not found:
        raise FileError("no CSV in the zip")
    return found


# -- the import ----------------------------------------------------------------------------
@dataclass
class SymbolStats:
    trades: int = 0
    first_id: int = 0
    last_id: int = 0
    first_ts: int = 0
    last_ts: int = 0

    def add(self, trade: Trade) -> None:
        if not self.trades:
            self.first_id = self.last_id = trade.trade_id
            self.first_ts = self.last_ts = trade.ts_ms
        else:
            self.first_id = min(self.first_id, trade.trade_id)
            self.last_id = max(self.last_id, trade.trade_id)
            self.first_ts = min(self.first_ts, trade.ts_ms)
            self.last_ts = max(self.last_ts, trade.ts_ms)
        self.trades += 1


@dataclass
class Summary:
    files: int = 0  # read to the end
    failed: dict[str, str] = field(default_factory=dict)  # file -> why
    skipped_files: list[str] = field(default_factory=list)  # named after another symbol
    rows: int = 0
    trades: int = 0  # valid trades handed to Kafka
    acked: int = 0  # of those, acknowledged by Kafka
    skipped_rows: int = 0  # valid-looking rows of symbols not asked for
    rejected: collections.Counter = field(default_factory=collections.Counter)
    symbols: dict[str, SymbolStats] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""  # the Kafka failure that stopped the import

    def as_json(self, dry_run: bool, topic: str) -> dict:
        return {
            "dry_run": dry_run, "topic": topic, "files": self.files, "failed": self.failed,
            "skipped_files": self.skipped_files, "rows": self.rows, "trades_sent": self.trades,
            "trades_acked": self.acked, "skipped_rows": self.skipped_rows,
            "rejected": dict(sorted(self.rejected.items())),
            "symbols": {s: vars(st) for s, st in sorted(self.symbols.items())},
            "seconds": round(self.seconds, 3), "error": self.error or None,
        }

    def text(self, dry_run: bool, target: str) -> str:
        rate = self.trades / self.seconds if self.seconds > 0 else 0.0
        verb = "would be sent (dry run, nothing sent)" if dry_run else f"sent to {target}, {self.acked:,} acknowledged"
        lines = [
            f"files: {self.files} read, {len(self.failed)} failed, {len(self.skipped_files)} skipped (other symbols)",
            *(f"  failed: {name}: {why}" for name, why in self.failed.items()),
            f"rows: {self.rows:,} read; trades: {self.trades:,} {verb}; "
            f"{sum(self.rejected.values()):,} rejected; {self.skipped_rows:,} skipped (other symbols)",
        ]
        if self.rejected:
            lines.append("rejected by reason: " + ", ".join(f"{r} {n:,}" for r, n in sorted(self.rejected.items())))
        for symbol, st in sorted(self.symbols.items()):
            lines.append(f"  {symbol}: {st.trades:,} trades, ids {st.first_id} .. {st.last_id}, "
                         f"{_iso(st.first_ts)} .. {_iso(st.last_ts)}")
        lines.append(f"time: {self.seconds:.1f} s, {rate:,.0f} trades/s")
        if self.error:
            lines.append(f"ERROR: {self.error}")
        return "\n".join(lines)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


class KafkaSink:
    """Records to Kafka with the producer's settings (idempotent, ``acks=all``); at most
    ``max_pending`` records unacknowledged (kafka-python's buffer is unbounded, so this is
    the back-pressure that keeps a big file from piling up in memory)."""

    def __init__(self, kafka: dict, topic: str, timeout_s: float, max_pending: int = 200) -> None:
        """``kafka``: the client settings, common.settings.kafka_client_config."""
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self._errors = (KafkaError,)
        self.topic, self.timeout_s, self.max_pending = topic, timeout_s, max_pending
        self.acked = 0
        self._pending: collections.deque = collections.deque()
        bootstrap_servers = ",".join(kafka["bootstrap_servers"])
        try:
            self._producer = KafkaProducer(
                **kafka,
                enable_idempotence=True,
                acks="all",
                linger_ms=5,
                batch_size=512 * 1024,
                compression_type=None,
                client_id="gostream-archive",
                bootstrap_timeout_ms=int(timeout_s * 1000),
                max_block_ms=int(timeout_s * 1000),
                request_timeout_ms=int(min(timeout_s, 30) * 1000),
                delivery_timeout_ms=int(max(timeout_s, 31) * 1000),
            )
        except KafkaError as exc:
            raise KafkaFailure(f"Kafka at {bootstrap_servers} not reachable ({type(exc).__name__}: {exc}); "
                               f"is the stack up (make up)?") from None
        try:
            partitions = self._producer.partitions_for(topic)
        except KafkaError as exc:
            partitions = None
            detail = f"{type(exc).__name__}: {exc}"
        if not partitions:
            self._producer.close(timeout=1)
            raise KafkaFailure(f"Kafka topic {topic!r} not found at {bootstrap_servers} "
                               f"({detail if partitions is None else 'no partitions'})")

    def send(self, symbol: str, trades: list[Trade]) -> None:
        try:
            future = self._producer.send(self.topic, key=symbol.encode(), value=encode_batch(trades))
        except self._errors as exc:
            raise KafkaFailure(f"Kafka send failed: {type(exc).__name__}: {exc}") from None
        self._pending.append((future, len(trades)))
        while len(self._pending) > self.max_pending or (self._pending and self._pending[0][0].is_done):
            self._settle()

    def _settle(self) -> None:
        future, count = self._pending.popleft()
        try:
            future.get(timeout=self.timeout_s + 5)
        except Exception as exc:  # KafkaError, or the wait itself timing out
            raise KafkaFailure(f"Kafka did not acknowledge a record: {type(exc).__name__}: {exc}") from None
        self.acked += count

    def finish(self) -> None:
        """Wait until Kafka acknowledged every record sent."""
        try:
            self._producer.flush(timeout=self.timeout_s + 5)
        except Exception as exc:
            raise KafkaFailure(f"Kafka flush failed: {type(exc).__name__}: {exc}") from None
        while self._pending:
            self._settle()

    def close(self) -> None:
        self._producer.close(timeout=5)


class DrySink:
    def __init__(self) -> None:
        self.acked = 0

    def send(self, symbol: str, trades: list[Trade]) -> None:
        pass

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(enabled: bool, **kwargs):
    from tqdm import tqdm

    return tqdm(disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)


class Importer:
    def __init__(self, sink, symbols: frozenset[str] | None, batch: int, progress: bool) -> None:
        self.sink, self.symbols, self.batch, self.progress = sink, symbols, batch, progress
        self.summary = Summary()
        self._pending: dict[str, list[Trade]] = {}
        self._started = 0.0

    def run(self, args: Sequence[str], timeout_s: float) -> Summary:
        self._started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="gostream-archive-") as downloads:
            files: list[tuple[str, str, list[tuple[str, int]]]] = []  # (shown name, local path, members)
            for arg in expand(args):
                name = os.path.basename(urllib.parse.urlsplit(arg).path if is_url(arg) else arg)
                match = _FILE_SYMBOL.match(name)
                if self.symbols is not None and match and match.group(1) not in self.symbols:
                    self.summary.skipped_files.append(arg)
                    continue
                try:
                    local = download(arg, downloads, timeout_s, self.progress) if is_url(arg) else arg
                    files.append((arg, local, members(local)))
                except FileError as exc:
                    self._failed(arg, str(exc))
            total = sum(size for _, _, found in files for _, size in found)
            bar_format = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}{postfix}]"
            with _bar(self.progress, total=total, unit="B", unit_scale=True, desc="import",
                      bar_format=bar_format) as bar:
                for shown, local, found in files:
                    try:
                        for member, _ in found:
                            self._read(shown, local, member, bar)
                        self.summary.files += 1
                    except FileError as exc:
                        self._failed(shown, str(exc))
                self._flush_all()
                self.sink.finish()
                self._show(bar)
        self.summary.acked = self.sink.acked
        self.summary.seconds = time.monotonic() - self._started
        return self.summary

    def _failed(self, name: str, why: str) -> None:
        self.summary.failed[name] = why
        log.error("file not imported", extra={"file": name, "error": why})

    def _show(self, bar) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        bar.set_postfix_str(f"{self.summary.trades:,} trades, {self.summary.trades / elapsed:,.0f} trades/s",
                            refresh=False)

    def _read(self, shown: str, local: str, member: str, bar) -> None:
        label = f"{shown}:{member}" if member else shown
        try:
            with zipfile.ZipFile(local) if member else open(local, "rb") as opened:
                raw = opened.open(member) if member else opened
                with raw:
                    self._read_stream(label, raw, bar)
        except (OSError, zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
            raise FileError(f"{type(exc).__name__}: {exc}") from None

    def _read_stream(self, label: str, raw, bar) -> None:
        summary, symbols, batch = self.summary, self.symbols, self.batch
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline=None)
        columns: Columns | None = None
        logged: collections.Counter = collections.Counter()
        done = 0
        line_no = 0
        while True:
            line = text.readline(MAX_LINE)
            if not line:
                break
            line_no += 1
            if len(line) >= MAX_LINE and not line.endswith("\n"):
                while (rest := text.readline(MAX_LINE)) and not rest.endswith("\n"):
                    pass
                summary.rows += 1
                self._reject(label, line_no, RecordError("too-long", f"over {MAX_LINE} characters"), logged)
                continue
            if columns is None:  # the header, or no header and the first trade
                if not line.strip():
                    continue
                try:
                    cells = split_line(line)
                except RecordError:
                    cells = []
                if len(cells) in (6, 7) and _DIGITS.fullmatch(cells[1]):
                    columns = Columns(width=len(cells))
                else:
                    columns = header_columns(cells)
                    if columns is None:
                        raise FileError(f"header not understood: {show(line.strip(), 200)}")
                    log.info("header read", extra={"file": label, "columns": dataclasses.asdict(columns)})
                    continue
            summary.rows += 1
            try:
                cells = split_line(line)
                if symbols is not None and len(cells) == columns.width and cells[columns.symbol] not in symbols:
                    summary.skipped_rows += 1
                    continue
                trade = parse_row(cells, columns, time.time_ns() // 1000)
            except RecordError as exc:
                self._reject(label, line_no, exc, logged)
                continue
            pending = self._pending.get(trade.symbol)
            if pending is None:
                pending = self._pending[trade.symbol] = []
                summary.symbols.setdefault(trade.symbol, SymbolStats())
            pending.append(trade)
            summary.symbols[trade.symbol].add(trade)
            summary.trades += 1
            if len(pending) >= batch:
                self.sink.send(trade.symbol, pending)
                self._pending[trade.symbol] = []
                position = raw.tell()
                bar.update(position - done)
                done = position
                self._show(bar)
        bar.update(raw.tell() - done)
        self._show(bar)

    def _reject(self, label: str, line_no: int, exc: RecordError, logged: collections.Counter) -> None:
        self.summary.rejected[exc.reason] += 1
        logged[exc.reason] += 1
        if logged[exc.reason] <= LOGGED_PER_REASON:
            last = logged[exc.reason] == LOGGED_PER_REASON
            more = " (further rows with this reason are counted, not logged)" if last else ""
            log.warning("row rejected" + more, extra={"file": label, "line": line_no, "reason": exc.reason,
                                                      "detail": exc.detail})

    def _flush_all(self) -> None:
        for symbol, pending in self._pending.items():
            if pending:
                self.sink.send(symbol, pending)
        self._pending.clear()


# -- the command ---------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gostream.producer.archive",
        description="Import OKX daily trade archives (zip or CSV; files, directories, http/https URLs) "
                    "through Kafka into the store. Idempotent: importing a file again stores nothing new.",
    )
    parser.add_argument("sources", nargs="+", metavar="PATH_OR_URL")
    parser.add_argument("--symbols", help="comma-separated instrument ids to import (default: all in the files)")
    parser.add_argument("--dry-run", action="store_true", help="read and check everything, send nothing")
    parser.add_argument("--bootstrap-servers", help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS, localhost:9092)")
    parser.add_argument("--topic", help="the trades topic (default: KAFKA_TOPIC, trades)")
    parser.add_argument("--batch", type=int, default=500, help="trades per Kafka record (default 500)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for Kafka (connect, metadata, acks) and for a download (default 60)")
    parser.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                        help="progress bar on stderr (auto: only when stderr is a terminal)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL") or "INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 5000:
        parser.error("--batch must be 1..5000")
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")
    symbols = None
    if args.symbols is not None:
        symbols = frozenset(s.strip() for s in args.symbols.split(",") if s.strip())
        if not symbols:
            parser.error("--symbols names no symbol")
    try:
        kafka = load(KafkaSettings)
    except SettingsError as exc:
        parser.error(str(exc))
    if args.bootstrap_servers:
        kafka = dataclasses.replace(kafka, kafka_bootstrap_servers=args.bootstrap_servers)
    bootstrap = kafka.kafka_bootstrap_servers
    topic = args.topic or kafka.kafka_topic

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("archive"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(args.log_level.upper())
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # its failures are reported as ours

    progress = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    target = f"Kafka topic {topic!r} at {bootstrap}"
    summary = Summary()
    sink = None
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():  # log lines above the bar, not through it
        try:
            sink = DrySink() if args.dry_run else KafkaSink(kafka_client_config(kafka), topic, args.timeout)
            importer = Importer(sink, symbols, args.batch, progress)
            try:
                summary = importer.run(args.sources, args.timeout)
            except KafkaFailure:
                summary = importer.summary
                summary.acked = sink.acked
                summary.seconds = time.monotonic() - importer._started
                raise
        except KafkaFailure as exc:
            summary.error = str(exc)
            log.error("import stopped", extra={"error": str(exc)})
        finally:
            if sink is not None:
                sink.close()
    if args.json:
        print(json.dumps(summary.as_json(args.dry_run, topic)))
    else:
        print(summary.text(args.dry_run, target))
    sys.stdout.flush()
    return 1 if summary.error or summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())

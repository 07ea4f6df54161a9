"""P1 ingest: a topic pre-filled with N trades, drained into QuestDB.

Side by side in one run, one after the other (two cores: running them at once would
halve both), each into a fresh table of the same schema and DEDUP keys:
  - ours: the real consumer (python -m gostream.consumer) into `trades`, on one trade per
    record (codec v1, JSON, what a connector reads too) and again on records of 100 trades
    (codec v2, what the producer writes in a burst);
  - anchor "bare": the minimal kafka-python + questdb loop (bench/bare_sink.py) into
    `trades_bare`, same schema, same 1m materialized view;
  - the official QuestDB Kafka Connect sink (questdb/kafka-questdb-connector) in a Kafka
    Connect standalone worker made of Maven Central's Connect jars of the project's Kafka
    version (bench/connect-pom.xml), on the same one-trade records, into `trades_connector`,
    configured as its documentation recommends for throughput (CONNECTOR_SETTINGS). The
    connector is not on Maven Central: the bench takes its jars from
    GOSTREAM_QUESTDB_CONNECTOR_DIR and says "not measured" without them (CONNECTOR_HOWTO).
Throughput = rows visible through SQL / seconds from the first visible row to the last,
so process start-up is not counted; CPU per row = CPU seconds (utime + stime from /proc)
of each process over that same window / rows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import PORTS, Profile, Stack, cpu_seconds, scalar, sql
from gostream.common.schema import CANDLES_1M_VIEW, CREATE_CANDLES_1M, CREATE_TRADES, TRADES_TABLE
from stack import components as c

BATCHED = 100  # trades per record in the second run of ours
CONNECTOR_ENV = "GOSTREAM_QUESTDB_CONNECTOR_DIR"
CONNECTOR_HOWTO = (
    f"not measured: {CONNECTOR_ENV} is not set to a directory holding the QuestDB Kafka connector's jars "
    "(kafka-questdb-connector-<version>.jar and questdb-client-<version>.jar). The connector is not on Maven "
    "Central and this repository carries nothing of it. To get it: take its public source (GitHub, "
    "questdb/kafka-questdb-connector), build its `connector` module with Maven outside this repository with the "
    "tests skipped and its test-scoped dependencies left out of that module's pom (one of them is only on "
    "jitpack.io, which these machines cannot reach), and point the variable at the `lib` folder of the package "
    "the build writes under connector/target/components/packages/."
)
CONNECT_JARS = c.JARS / "connect"
CONNECT_POM = Path(__file__).with_name("connect-pom.xml")
CONNECT_PORT = PORTS.kafka + 5000  # the worker's REST listener
CONNECTOR_TABLE = "trades_connector"
CONNECTOR_NAME = "questdb-sink"
# The connector's settings. Throughput, per its documentation (questdb.com/docs, "Ingestion
# from Kafka", Performance tuning): batches of auto_flush_rows (75,000 by default; the docs
# lower it only for latency at low rates) and a flush after allowed.lag ms without new
# records; one task per partition (Kafka Connect's unit of parallelism); the record's own
# time as the designated timestamp (needed for DEDUP); symbol and double columns named.
# Kafka Connect's ReplaceField transform maps our JSON onto the table: drops the codec
# version, renames count -> fills and received -> received_at (µs into a TIMESTAMP column).
CONNECTOR_SETTINGS = {
    "connector.class": "io.questdb.kafka.QuestDBSinkConnector",
    "tasks.max": "3",
    "table": CONNECTOR_TABLE,
    "client.conf.string": f"http::addr=127.0.0.1:{PORTS.questdb_http};auto_flush_rows=75000;",
    "allowed.lag": "1000",
    "key.converter": "org.apache.kafka.connect.storage.StringConverter",
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter.schemas.enable": "false",
    "include.key": "false",
    "symbols": "symbol,side",
    "doubles": "price,size",
    "timestamp.field.name": "ts",
    "timestamp.units": "millis",
    "transforms": "fields",
    "transforms.fields.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
    "transforms.fields.exclude": "v",
    "transforms.fields.renames": "count:fills,received:received_at",
}
# The standalone worker, as Kafka's config/connect-standalone.properties ships it (offsets
# committed every 10 s) and kafka-run-class.sh starts it (heap, G1 settings).
CONNECT_WORKER = {
    "key.converter": "org.apache.kafka.connect.storage.StringConverter",
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter.schemas.enable": "false",
    "offset.flush.interval.ms": "10000",
}
CONNECT_JVM = ["-Xms256M", "-Xmx2G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
               "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent"]


def kafka_version() -> str:
    """The project's Kafka version: the broker's, in stack/pom.xml."""
    return re.search(r"<kafka\.version>([^<]+)</kafka\.version>", c.POM.read_text()).group(1)


def ensure_connect_jars() -> Path:
    """Kafka Connect's runtime, JSON converter and transforms from Maven Central, once."""
    if any(CONNECT_JARS.glob(f"connect-runtime-{kafka_version()}.jar")):
        return CONNECT_JARS
    print(f"P1: fetching Kafka Connect {kafka_version()} from Maven Central into {CONNECT_JARS} ...", flush=True)
    partial = CONNECT_JARS.with_name("connect.partial")
    subprocess.run(["mvn", "-q", "-B", "-f", str(CONNECT_POM), "dependency:copy-dependencies",
                    f"-DoutputDirectory={partial}", "-DincludeScope=runtime", f"-Dkafka.version={kafka_version()}"],
                   check=True)
    shutil.rmtree(CONNECT_JARS, ignore_errors=True)
    os.replace(partial, CONNECT_JARS)
    return CONNECT_JARS


def connector_dir() -> Path | None:
    """The built connector's jars, or None when the variable is unset or holds none."""
    value = os.environ.get(CONNECTOR_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not any(path.glob("kafka-questdb-connector-*.jar")):
        raise RuntimeError(f"{CONNECTOR_ENV}={value} holds no kafka-questdb-connector-*.jar")
    return path


def _connect_status() -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{CONNECT_PORT}/connectors/{CONNECTOR_NAME}/status",
                                    timeout=2) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def _connect_running() -> bool:
    status = _connect_status()
    tasks = (status or {}).get("tasks") or []
    return bool(tasks) and all(t.get("state") == "RUNNING" for t in tasks)


def connect_worker(stack: Stack, topic: str, plugin: Path) -> c.Spec:
    """A Kafka Connect standalone worker running the QuestDB sink on ``topic``. The
    connector's jars go on the worker's class path, as its docs install them (into libs/)."""
    home = stack.work / "connect"
    worker, connector = home / "worker.properties", home / "questdb-sink.properties"
    jars = ensure_connect_jars()

    def prepare() -> None:
        home.mkdir(parents=True, exist_ok=True)
        worker.write_text("".join(f"{k}={v}\n" for k, v in {
            "bootstrap.servers": f"127.0.0.1:{PORTS.kafka}", **CONNECT_WORKER,
            "offset.storage.file.filename": str(home / "connect.offsets"),
            "listeners": f"http://127.0.0.1:{CONNECT_PORT}"}.items()))
        connector.write_text("".join(f"{k}={v}\n" for k, v in {
            "name": CONNECTOR_NAME, "topics": topic, **CONNECTOR_SETTINGS}.items()))

    return c.Spec(
        name="kafka-connect",
        argv=["java", *CONNECT_JVM, f"-Dlog4j2.configurationFile={c.ROOT / 'stack' / 'kafka-log4j2.properties'}",
              "-cp", f"{jars}/*:{plugin}/*", "org.apache.kafka.connect.cli.ConnectStandalone",
              str(worker), str(connector)],
        ready=_connect_running,
        url=f"http://127.0.0.1:{CONNECT_PORT}/connectors",
        prepare=prepare,
        stop_timeout_s=30,
    )


def fill(topic: str, n: int, per_record: int = 1) -> dict:
    """N trades on ``topic`` in our codec, keyed by symbol: one per record (version 1, the
    shape a connector reads too), or ``per_record`` per record (version 2, what the
    producer writes when trades arrive faster than one Kafka send)."""
    from kafka import KafkaProducer

    from gostream.common.trade import Trade, encode, encode_batch

    producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{PORTS.kafka}", acks=1, enable_idempotence=False,
                             linger_ms=50, batch_size=1 << 20, max_request_size=8 << 20)
    symbols = [f"P1S{i}-USDT" for i in range(6)]
    keys = [s.encode() for s in symbols]
    base_ms = (int(time.time()) - 3600) * 1000
    started = time.perf_counter()
    pending: list[list[Trade]] = [[] for _ in symbols]
    records = 0
    for i in range(n):
        k = i % 6
        trade = Trade(symbols[k], 1_000_000 + i, 30_000.0 + (i % 997) * 0.1, 0.001 + (i % 89) * 0.0001,
                      "buy" if i & 1 else "sell", base_ms + i // 6, int(time.time() * 1e6))
        if per_record == 1:
            producer.send(topic, key=keys[k], value=encode(trade))
            records += 1
            continue
        pending[k].append(trade)
        if len(pending[k]) == per_record or i >= n - 6:
            producer.send(topic, key=keys[k], value=encode_batch(pending[k]))
            pending[k] = []
            records += 1
    producer.flush(120)
    producer.close()
    return {"trades": n, "records": records, "seconds": round(time.perf_counter() - started, 1)}


def _drain(table: str, n: int, timeout_s: float, on_first=None, pids: dict[str, int | None] | None = None) -> dict:
    """Poll ``count()`` of ``table`` until it reaches ``n``; rate from first row to last,
    and the CPU each of ``pids`` spent in that window per row (µs)."""
    pids = pids or {}
    deadline = time.monotonic() + timeout_s
    first_t = first_n = None
    cpu0: dict[str, float] = {}
    count = 0
    while time.monotonic() < deadline:
        count = int(scalar(f"select count() from {table}"))
        t = time.monotonic()
        if count and first_t is None:
            first_t, first_n = t, count
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            if on_first:
                on_first()
        if count >= n:
            break
        time.sleep(0.2)
    last_t = time.monotonic()
    rows = count - (first_n or 0)
    seconds = max(last_t - (first_t or last_t), 1e-6)
    cpu = {name: cpu_seconds(pid) - cpu0.get(name, 0.0) for name, pid in pids.items()}
    return {"rows": count, "complete": count >= n, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_us_per_row": {k: round(1e6 * v / max(rows, 1), 1) for k, v in cpu.items()}}


def _like_trades(table: str) -> None:
    """``table`` created like `trades` (same columns, WAL, DEDUP keys) with its own 1m
    materialized view, so QuestDB does the same work for every sink."""
    sql(CREATE_TRADES.replace(f"EXISTS {TRADES_TABLE}", f"EXISTS {table}"))
    sql(CREATE_CANDLES_1M.replace(CANDLES_1M_VIEW, f"candles_1m_{table}").replace(f"FROM {TRADES_TABLE}", f"FROM {table}"))


def run_connector(stack: Stack, topic: str, n: int, timeout_s: float) -> dict:
    """The official sink on the one-trade records of ``topic`` into a fresh table."""
    plugin = connector_dir()
    if plugin is None:
        return {"measured": False, "why": CONNECTOR_HOWTO}
    _like_trades(CONNECTOR_TABLE)
    process = stack.start(connect_worker(stack, topic, plugin), 180)
    java = {"connect": process.pid, "kafka": stack.kafka.pid, "questdb": stack.questdb.pid}
    try:
        result = _drain(CONNECTOR_TABLE, n, timeout_s, pids=java)
        result["status"] = _connect_status()
    finally:
        stack.stop(process)
    jars = sorted(p.name for p in plugin.glob("*.jar"))
    return {"measured": True, **result, "jars": jars, "connect_version": kafka_version(),
            "settings": dict(CONNECTOR_SETTINGS), "worker": {**CONNECT_WORKER, "jvm": " ".join(CONNECT_JVM)}}


def run(stack: Stack, n: int, stamp: str, profile_s: int = 15) -> dict:
    topic = stack.topic("p1", 3)
    print(f"P1: filling topic {topic} with {n:,} trades ...", flush=True)
    filled = fill(topic, n)
    print(f"P1: filled in {filled['seconds']} s", flush=True)
    timeout_s = max(300, n / 2000)
    result: dict = {"n": n, "fill": filled}
    servers = {"kafka": stack.kafka.pid, "questdb": stack.questdb.pid}

    # ours
    env = stack.env(topic, "p1-ours")
    process = stack.start(c.consumer(PORTS, env))
    profile: list[Profile] = []
    ours = _drain(TRADES_TABLE, n, timeout_s, pids={"consumer": process.pid, **servers},
                  on_first=lambda: profile.append(Profile(process.pid, "p1-consumer", profile_s, stamp)))
    stack.stop(process)
    ours["profile"] = profile[0].summary() if profile else {}
    result["ours"] = ours
    print(f"P1: ours {ours['rows_per_s']:,} rows/s ({ours['rows']:,} rows in {ours['seconds']} s), "
          f"CPU µs/row {ours['cpu_us_per_row']}", flush=True)

    # anchor: bare loop, same schema and view under other names
    bare_table = "trades_bare"
    _like_trades(bare_table)
    bare_proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_sink", "--bootstrap", f"127.0.0.1:{PORTS.kafka}", "--topic", topic,
         "--questdb", f"127.0.0.1:{PORTS.questdb_http}", "--table", bare_table, "--n", str(n)],
        cwd=c.ROOT, stdout=subprocess.PIPE, text=True)
    bare_profile: list[Profile] = []
    try:
        bare = _drain(bare_table, n, timeout_s, pids={"bare": bare_proc.pid, **servers},
                      on_first=lambda: bare_profile.append(Profile(bare_proc.pid, "p1-bare", profile_s, stamp)))
    finally:
        bare_proc.terminate()
        out, _ = bare_proc.communicate(30)
    bare["profile"] = bare_profile[0].summary() if bare_profile else {}
    bare["self_reported"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    result["bare_anchor"] = bare
    print(f"P1: bare anchor {bare['rows_per_s']:,} rows/s, CPU µs/row {bare['cpu_us_per_row']}", flush=True)

    # the official connector, same records
    print("P1: the QuestDB Kafka connector in a Kafka Connect standalone worker ...", flush=True)
    connector = result["connector"] = run_connector(stack, topic, n, timeout_s)
    if connector["measured"]:
        print(f"P1: connector {connector['rows_per_s']:,} rows/s ({connector['rows']:,} rows in "
              f"{connector['seconds']} s), CPU µs/row {connector['cpu_us_per_row']}", flush=True)
        print("P1: connector settings: " + ", ".join(f"{k}={v}" for k, v in connector["settings"].items()), flush=True)
    else:
        print(f"P1: connector {connector['why']}", flush=True)

    # ours again, on records of 100 trades (codec v2, as the producer writes them in bursts)
    topic_v2 = stack.topic("p1v2", 3)
    # A fresh table (the consumer recreates it and its view at start), so rows are counted from 0.
    sql(f"DROP MATERIALIZED VIEW IF EXISTS {CANDLES_1M_VIEW}")
    sql(f"DROP TABLE IF EXISTS {TRADES_TABLE}")
    filled_v2 = fill(topic_v2, n, per_record=BATCHED)
    process = stack.start(c.consumer(PORTS, stack.env(topic_v2, "p1-ours-v2")))
    batched = _drain(TRADES_TABLE, n, timeout_s, pids={"consumer": process.pid, **servers})
    stack.stop(process)
    batched["fill"] = filled_v2
    result["ours_batched"] = batched
    print(f"P1: ours on records of {BATCHED} trades {batched['rows_per_s']:,} rows/s, "
          f"CPU µs/row {batched['cpu_us_per_row']}", flush=True)

    result["ours_vs_bare"] = round(ours["rows_per_s"] / max(bare["rows_per_s"], 1), 2)
    if connector["measured"]:
        rate = max(connector["rows_per_s"], 1)
        result["ours_vs_connector"] = round(ours["rows_per_s"] / rate, 2)
        result["ours_batched_vs_connector"] = round(batched["rows_per_s"] / rate, 2)
        print(f"P1: ours / connector in rows/s: {result['ours_vs_connector']}x on one trade per record, "
              f"{result['ours_batched_vs_connector']}x on the producer's batched records", flush=True)
    else:
        result["ours_vs_connector"] = result["ours_batched_vs_connector"] = None
    return result

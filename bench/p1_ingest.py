"""P1 ingest: a topic pre-filled with N trades, drained into QuestDB.

Side by side in one run, one after the other (two cores: running them at once would
halve both):
  - ours: the real consumer (python -m gostream.consumer) into `trades`, on one trade per
    record (codec v1, what a connector could read) and again on records of 100 trades
    (codec v2, what the producer writes in a burst);
  - anchor "bare": the minimal kafka-python + questdb loop (bench/bare_sink.py) into
    `trades_bare`, same schema, same 1m materialized view;
  - the official QuestDB Kafka Connect sink, when its jar can be fetched from Maven
    Central (it cannot: see CONNECTOR_UNAVAILABLE).
Throughput = rows visible through SQL / seconds from the first visible row to the last,
so process start-up is not counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

from bench.common import PORTS, Profile, Stack, scalar, sql
from gostream.common.schema import CANDLES_1M_VIEW, CREATE_CANDLES_1M, CREATE_TRADES, TRADES_TABLE
from stack import components as c

BATCHED = 100  # trades per record in the second run of ours
CONNECTOR_METADATA = "https://repo.maven.apache.org/maven2/org/questdb/kafka-questdb-connector/maven-metadata.xml"
CONNECTOR_UNAVAILABLE = (
    "org.questdb:kafka-questdb-connector is not published on Maven Central ({url} answers HTTP {status}); "
    "QuestDB distributes the connector as a GitHub release zip and on Confluent Hub, neither reachable here. "
    "Kafka Connect itself (org.apache.kafka:connect-runtime 4.3.1) is on Maven Central, but without the sink "
    "there is nothing to compare; the bare kafka-python+questdb loop stands in as the anchor."
)


def connector_status() -> str:
    try:
        with urllib.request.urlopen(CONNECTOR_METADATA, timeout=10) as response:
            return f"available (HTTP {response.status}) but not wired into this benchmark yet"
    except urllib.error.HTTPError as exc:
        return CONNECTOR_UNAVAILABLE.format(url=CONNECTOR_METADATA, status=exc.code)
    except OSError as exc:
        return CONNECTOR_UNAVAILABLE.format(url=CONNECTOR_METADATA, status=f"unreachable ({exc})")


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


def _drain(table: str, n: int, timeout_s: float, on_first=None) -> dict:
    """Poll ``count()`` of ``table`` until it reaches ``n``; rate from first row to last."""
    deadline = time.monotonic() + timeout_s
    first_t = first_n = None
    count = 0
    while time.monotonic() < deadline:
        count = int(scalar(f"select count() from {table}"))
        t = time.monotonic()
        if count and first_t is None:
            first_t, first_n = t, count
            if on_first:
                on_first()
        if count >= n:
            break
        time.sleep(0.2)
    last_t = time.monotonic()
    rows = count - (first_n or 0)
    seconds = max(last_t - (first_t or last_t), 1e-6)
    return {"rows": count, "complete": count >= n, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def run(stack: Stack, n: int, stamp: str, profile_s: int = 15) -> dict:
    topic = stack.topic("p1", 3)
    print(f"P1: filling topic {topic} with {n:,} trades ...", flush=True)
    filled = fill(topic, n)
    print(f"P1: filled in {filled['seconds']} s", flush=True)
    timeout_s = max(300, n / 2000)
    result: dict = {"n": n, "fill": filled}

    # ours
    env = stack.env(topic, "p1-ours")
    process = stack.start(c.consumer(PORTS, env))
    profile: list[Profile] = []
    ours = _drain(TRADES_TABLE, n, timeout_s,
                  on_first=lambda: profile.append(Profile(process.pid, "p1-consumer", profile_s, stamp)))
    stack.stop(process)
    ours["profile"] = profile[0].summary() if profile else {}
    result["ours"] = ours
    print(f"P1: ours {ours['rows_per_s']:,} rows/s ({ours['rows']:,} rows in {ours['seconds']} s)", flush=True)

    # anchor: bare loop, same schema and view under other names
    bare_table = "trades_bare"
    sql(CREATE_TRADES.replace(f"EXISTS {TRADES_TABLE}", f"EXISTS {bare_table}"))
    sql(CREATE_CANDLES_1M.replace(CANDLES_1M_VIEW, "candles_1m_bare").replace(f"FROM {TRADES_TABLE}", f"FROM {bare_table}"))
    bare_proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_sink", "--bootstrap", f"127.0.0.1:{PORTS.kafka}", "--topic", topic,
         "--questdb", f"127.0.0.1:{PORTS.questdb_http}", "--table", bare_table, "--n", str(n)],
        cwd=c.ROOT, stdout=subprocess.PIPE, text=True)
    bare_profile: list[Profile] = []
    try:
        bare = _drain(bare_table, n, timeout_s,
                      on_first=lambda: bare_profile.append(Profile(bare_proc.pid, "p1-bare", profile_s, stamp)))
    finally:
        bare_proc.terminate()
        out, _ = bare_proc.communicate(30)
    bare["profile"] = bare_profile[0].summary() if bare_profile else {}
    bare["self_reported"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    result["bare_anchor"] = bare
    print(f"P1: bare anchor {bare['rows_per_s']:,} rows/s", flush=True)

    # ours again, on records of 100 trades (codec v2, as the producer writes them in bursts)
    topic_v2 = stack.topic("p1v2", 3)
    # A fresh table (the consumer recreates it and its view at start), so rows are counted from 0.
    sql(f"DROP MATERIALIZED VIEW IF EXISTS {CANDLES_1M_VIEW}")
    sql(f"DROP TABLE IF EXISTS {TRADES_TABLE}")
    filled_v2 = fill(topic_v2, n, per_record=BATCHED)
    process = stack.start(c.consumer(PORTS, stack.env(topic_v2, "p1-ours-v2")))
    batched = _drain(TRADES_TABLE, n, timeout_s)
    stack.stop(process)
    batched["fill"] = filled_v2
    result["ours_batched"] = batched
    print(f"P1: ours on records of {BATCHED} trades {batched['rows_per_s']:,} rows/s", flush=True)

    result["connector"] = connector_status()
    result["ours_vs_bare"] = round(ours["rows_per_s"] / max(bare["rows_per_s"], 1), 2)
    result["ours_vs_connector"] = None
    print(f"P1: connector: {result['connector']}", flush=True)
    return result

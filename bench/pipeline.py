"""P2 whole pipeline, P3 latency, and the producer/consumer half of P6 footprint.

The simulated OKX exchange (tests.okxsim, channel trades-all) runs in a process of its own
and fires trades from pre-built frames, one per push unless ``per_push`` says more; the
real producer and consumer run as subprocesses against the bench Kafka and QuestDB.

P3 first (on a small table): 1,000 trades/s; a poller asks QuestDB for the newest trade
id as fast as it answers; a trade's latency = the poll answer that first shows it - the
moment it was handed to the exchange to send (an upper bound: + up to 1 ms pause and one
query round trip over the PostgreSQL wire).
Where the time goes, in a second pass: the producer stamps its receipt (received_at), and a
tap reading the topic with a short fetch wait notes when each trade could first be read
from Kafka. The tap is a kafka-python consumer decoding every record: ~0.2 of a core and
more Kafka work, which on two cores slowed the very path it timed (one pair of runs: p50
32 -> 23 ms, p99 146 -> 82 ms without it), so the headline numbers come from the pass
without it.

P2: the rate is stepped; each step prints for ``duration`` s, then waits for the rows.
A step is sustained when every trade is in QuestDB (zero loss, DEDUP means distinct) and
the backlog drained within ``drain_ok_s`` of the end (the pipeline kept up, not merely
caught up later). CPU seconds per process show where the time goes.

CPU per trade (issue 18), the headline: µs of CPU (utime + stime from /proc) each service
spent per trade offered, over a step at 1,000 and at 10,000 trades/s from the start of the
firehose until the last row is stored. CPU time is steadier across machines and loads than
trades/s. Each pass gets a pipeline of its own (topic, symbol, fresh producer and consumer).
With GOSTREAM_BENCH_BASELINE=<a source tree's src/> (e.g. an older commit checked out with
`git worktree add`), the pass also runs the producer and consumer from that tree, before and
after ours alternately, so a change's before -> after comes from one run on one stack.
Beside it, at the same rates, the producer's Kafka hand-off alone (bench.publisher_floor):
the part of the producer's figure that is our Publisher and kafka-python.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone

from kafka import KafkaConsumer, TopicPartition

from bench import publisher_floor
from bench.common import PORTS, Profile, pg_connection, Stack, cpu_seconds, memory_mb, percentiles, scalar, sql
from gostream.common.trade import decode
from stack import components as c

P2_SYMBOL, P3_SYMBOL = "P2-USDT", "P3-USDT"
CPU_RATES = (1_000, 10_000)
BASELINE = os.environ.get("GOSTREAM_BENCH_BASELINE") or ""


class Exchange:
    """The simulated OKX exchange in a process of its own (``python -m tests.okxsim
    --control``), so generating load never competes with this process for the GIL;
    driven over its /sim/* HTTP endpoints."""

    def __init__(self, stack: Stack) -> None:
        self.process = stack.start(c.exchange(PORTS, rate=0, control=True))
        self.ws_url = f"ws://127.0.0.1:{PORTS.exchange}/ws/v5/business"
        self.rest_url = f"http://127.0.0.1:{PORTS.exchange}"

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.rest_url + path, timeout=60) as response:
            return json.load(response)

    def subscribed(self, symbol: str) -> int:
        return self._get("/sim/status")["subscribed"].get(symbol, 0)

    def firehose(self, symbol: str, first_id: int, rate: float, duration_s: float, per_push: int = 1) -> dict:
        """Trades ``first_id``... at ``rate``/s for ``duration_s``; returns the exchange's
        account of it (emitted, achieved_rate, sent: [first id, count, wall time] bursts)."""
        self._get("/sim/firehose?" + urllib.parse.urlencode(
            {"symbol": symbol, "first_id": first_id, "rate": rate, "duration": duration_s, "per_push": per_push}))
        deadline = time.monotonic() + duration_s + 60
        while time.monotonic() < deadline:
            time.sleep(0.5)
            status = self._get("/sim/status")
            if status["firehose_error"]:
                raise RuntimeError(f"exchange firehose failed: {status['firehose_error']}")
            if not status["firehose_running"] and status["firehose"] and status["firehose"]["first_id"] == first_id:
                return status["firehose"]
        raise RuntimeError("exchange firehose did not finish")


class KafkaTap:
    """Notes when each trade of ``symbol`` can first be read from the topic: a consumer of
    its own (no group) on every partition from the end, with a short fetch wait so its
    own wait does not hide the pipeline's."""

    def __init__(self, symbol: str, topic: str = "trades", fetch_max_wait_ms: int = 5) -> None:
        self.symbol = symbol
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{PORTS.kafka}", enable_auto_commit=False,
                                       fetch_max_wait_ms=fetch_max_wait_ms)
        partitions = [TopicPartition(topic, p) for p in sorted(self._consumer.partitions_for_topic(topic))]
        self._consumer.assign(partitions)
        self._consumer.seek_to_end()
        for partition in partitions:
            self._consumer.position(partition)  # resolve "end" now, before the firehose starts
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._consumer.poll(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for record in records:
                    for trade in decode(record.value):
                        if trade.symbol == self.symbol:
                            self.seen.setdefault(int(trade.trade_id), now)

    def stop(self) -> dict[int, float]:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()
        return self.seen


def _count(symbol: str, lo: int, hi: int) -> int:
    return int(scalar(f"select count() from trades where symbol = '{symbol}' and trade_id between {lo} and {hi}"))


def start_pipeline(stack: Stack, exchange: Exchange, topic: str = "trades",
                   symbols: tuple[str, ...] = (P2_SYMBOL, P3_SYMBOL), **env: str):
    topic = stack.topic(topic, 3)
    consumer = stack.service("consumer", topic, f"bench-{topic}", **env)
    producer = stack.service("producer", topic, None,
                             OKX_WS_URL=exchange.ws_url, OKX_REST_URL=exchange.rest_url,
                             SYMBOLS=",".join(symbols), **env)
    deadline = time.monotonic() + 30
    while not all(exchange.subscribed(symbol) for symbol in symbols):
        if time.monotonic() > deadline:
            raise RuntimeError("producer did not subscribe")
        time.sleep(0.1)
    return producer, consumer


def warm_up(exchange: Exchange, rate: float = 1000, duration_s: float = 15, first_id: int = 5_000_000) -> None:
    """Right after start the JVMs compile their hot paths (Kafka's C2 thread took a third of
    a core during the first P3 runs): run the same load first so P3 measures steady state."""
    run = exchange.firehose(P2_SYMBOL, first_id, rate, duration_s)
    deadline = time.monotonic() + 60
    while _count(P2_SYMBOL, first_id, run["last_id"]) < run["emitted"] and time.monotonic() < deadline:
        time.sleep(0.5)


def _offer(exchange: Exchange, symbol: str, first_id: int, rate: float, duration_s: float,
           drain_max_s: float = 60.0) -> tuple[dict, int, float]:
    """Fire a step and wait for its rows: (the exchange's account, rows stored, s to drain)."""
    run = exchange.firehose(symbol, first_id, rate, duration_s)
    run.pop("sent", None)
    ended = time.monotonic()
    stored = 0
    while time.monotonic() - ended < drain_max_s:
        stored = _count(symbol, run["first_id"], run["last_id"])
        if stored >= run["emitted"]:
            break
        time.sleep(0.25)
    return run, stored, time.monotonic() - ended


def cpu_pass(stack: Stack, exchange: Exchange, label: str, src: str, index: int, rates: tuple[int, ...],
             duration_s: float) -> dict:
    """CPU per trade of the producer and the consumer run from the source tree ``src``, on
    a pipeline of their own; no profiler attached. History at start is off (HISTORY_WINDOW=0):
    a fresh symbol would otherwise page the exchange's REST history during the steps."""
    symbol = f"CPU{index}-USDT"
    env = {"HISTORY_WINDOW": "0", "PYTHONPATH": src}
    producer, consumer = start_pipeline(stack, exchange, f"cpu-{index}", (symbol,), **env)
    procs = {"producer": producer, "consumer": consumer}
    everyone = {**procs, "kafka": stack.kafka, "questdb": stack.questdb, "exchange": exchange.process}
    steps = []
    try:
        # The first trades pay for imports and connections: a short warm-up, not measured.
        _offer(exchange, symbol, 1, 1000, 5)
        next_id = 1_000_000
        for rate in rates:
            cpu0 = {name: cpu_seconds(p.pid) for name, p in everyone.items()}
            run, stored, drain_s = _offer(exchange, symbol, next_id, rate, duration_s)
            cpu = {name: cpu_seconds(p.pid) - cpu0[name] for name, p in everyone.items()}
            next_id = run["last_id"] + 1
            emitted = max(run["emitted"], 1)
            step = {"code": label, "target_rate": rate, "achieved_rate": run["achieved_rate"],
                    "emitted": run["emitted"], "stored": stored, "lost": run["emitted"] - stored,
                    "drain_s": round(drain_s, 1), "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
                    "cpu_us_per_trade": {k: round(1e6 * v / emitted, 1) for k, v in cpu.items()},
                    "loadavg": [round(x, 2) for x in os.getloadavg()]}
            steps.append(step)
            print(f"CPU per trade ({label}): {rate:,}/s -> µs/trade {step['cpu_us_per_trade']} "
                  f"(lost {step['lost']:,}, load {step['loadavg'][0]})", flush=True)
    finally:
        stack.stop(producer)
        stack.stop(consumer)
    return {"code": label, "src": src, "steps": steps}


def cpu_per_trade(stack: Stack, exchange: Exchange, rates: tuple[int, ...] = CPU_RATES, duration_s: float = 30,
                  baseline: str = BASELINE, rounds: int = 2) -> dict:
    """The headline CPU figure; with a baseline, ``rounds`` pairs alternating which goes
    first. Per rate and code: the median of its passes (the mean of two)."""
    # Ours is the tree this bench runs from (not whatever the venv installed: run from a
    # `git worktree` of a commit, it measures that commit).
    codes = [("ours", str(c.ROOT / "src"))] + ([("baseline", baseline)] if baseline else [])
    passes = []
    for round_ in range(rounds if baseline else 1):
        for label, src in (codes if round_ % 2 else codes[::-1]):
            passes.append(cpu_pass(stack, exchange, label, src, len(passes), rates, duration_s))
    summary: dict = {}
    for label, _ in codes:
        for rate in rates:
            got = [s["cpu_us_per_trade"] for p in passes if p["code"] == label for s in p["steps"]
                   if s["target_rate"] == rate]
            summary.setdefault(label, {})[str(rate)] = {
                k: round(statistics.median(g[k] for g in got), 1) for k in got[0]}
    # The producer's Kafka side alone, at the same rates: the floor under its figure.
    kafka_floor = publisher_floor.run(stack, codes[0][1], rates, duration_s)
    return {"rates": list(rates), "duration_s": duration_s, "baseline": baseline or None, "passes": passes,
            "us_per_trade": summary, "kafka_floor": kafka_floor}


def idle_footprint(procs: dict, settle_s: float = 5.0) -> dict:
    time.sleep(settle_s)
    return {name: memory_mb(p.pid) for name, p in procs.items()}


def p3_latency(exchange: Exchange, first_id: int, rate: float = 1000, duration_s: float = 20,
               poll_pause_s: float = 0.001, tap: bool = False) -> dict:
    iso = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    visible_at: dict[int, float] = {}
    stop = threading.Event()
    polls = []

    def poll() -> None:
        # Over the PostgreSQL wire: a query costs QuestDB ~0.15 ms of CPU there against
        # ~0.7 ms over HTTP /exec, and polling as fast as HTTP answers took most of a core
        # from the pipeline being measured. The pause bounds the poll rate (~1,000/s).
        seen = first_id - 1
        query = f"select max(trade_id) m from trades where timestamp >= '{iso}' and symbol = '{P3_SYMBOL}'"
        with pg_connection() as connection, connection.cursor() as cursor:
            while not stop.is_set():
                t0 = time.time()
                cursor.execute(query)
                top = cursor.fetchone()[0] or 0
                t1 = time.time()
                polls.append((t1 - t0) * 1000)
                if top > seen:
                    for i in range(seen + 1, top + 1):
                        visible_at[i] = t1
                    seen = top
                time.sleep(poll_pause_s)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    kafka_tap = KafkaTap(P3_SYMBOL) if tap else None
    run = exchange.firehose(P3_SYMBOL, first_id, rate, duration_s)
    sent_at = {i: wall for first, count, wall in run.pop("sent") for i in range(first, first + count)}
    deadline = time.monotonic() + 30
    while len(visible_at) < run["emitted"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    poller.join(5)
    latencies = [(visible_at[i] - sent_at[i]) * 1000 for i in sent_at if i in visible_at]
    # Where the time goes: the producer stamps its receipt time (received_at, µs).
    rows = sql(f"select trade_id, cast(received_at as long) r from trades where timestamp >= '{iso}' "
               f"and symbol = '{P3_SYMBOL}'")
    to_producer = [(row["r"] / 1e6 - sent_at[row["trade_id"]]) * 1000 for row in rows if row["trade_id"] in sent_at]
    producer_to_visible = [(visible_at[row["trade_id"]] - row["r"] / 1e6) * 1000 for row in rows
                           if row["trade_id"] in visible_at]
    result = {"rate": rate, "run": run, "visible": len(latencies), "latency_ms": percentiles(latencies),
              "exchange_to_producer_ms": percentiles(to_producer),
              "producer_to_visible_ms": percentiles(producer_to_visible),
              "sql_poll_ms": percentiles(polls)}
    if kafka_tap:
        in_kafka_at = kafka_tap.stop()
        result["producer_to_kafka_ms"] = percentiles([(in_kafka_at[row["trade_id"]] - row["r"] / 1e6) * 1000
                                                      for row in rows if row["trade_id"] in in_kafka_at])
        result["kafka_to_visible_ms"] = percentiles([(visible_at[i] - in_kafka_at[i]) * 1000
                                                     for i in in_kafka_at if i in visible_at])
    return result


def p3_bare(stack: Stack, exchange: Exchange, consumer, duration_s: float) -> dict:
    """P3's floor in the same run: our consumer stopped, bench/bare_sink.py --latency reading
    the same topic from its end into the same table, the same firehose and poller."""
    stack.stop(consumer)
    bare = subprocess.Popen([sys.executable, "-m", "bench.bare_sink", "--latency",
                             "--bootstrap", f"127.0.0.1:{PORTS.kafka}", "--topic", consumer.spec.env["KAFKA_TOPIC"],
                             "--questdb", f"127.0.0.1:{PORTS.questdb_http}", "--table", "trades", "--n", "0"],
                            cwd=c.ROOT, stdout=subprocess.PIPE, text=True)
    try:
        if "ready" not in (bare.stdout.readline() or ""):
            raise RuntimeError(f"the bare loop did not start (exit {bare.poll()})")
        return p3_latency(exchange, 3_000_000, 1000, duration_s)
    finally:
        bare.terminate()
        bare.wait(30)


def p2_steps(exchange: Exchange, procs: dict, java: dict, rates: list[int], duration_s: float, stamp: str,
             per_push: int = 1, drain_ok_s: float = 5.0, drain_max_s: float = 60.0) -> dict:
    steps = []
    best = 0
    peak = {name: {"rss": 0.0, "pss": 0.0} for name in procs}
    next_id = 10_000_000
    everyone = {**procs, **java, "exchange": exchange.process}
    for rate in rates:
        print(f"P2: {rate:,} trades/s for {duration_s:.0f} s ({per_push} per push) ...", flush=True)
        cpu0 = {name: cpu_seconds(p.pid) for name, p in everyone.items()}
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(1.0):
                for name, p in procs.items():
                    now = memory_mb(p.pid)
                    peak[name] = {key: max(peak[name][key], now[key]) for key in now}

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        profiles = [Profile(p.pid, f"p2-{rate}-{name}", int(min(15, duration_s / 2)), stamp)
                    for name, p in {**procs, "exchange": exchange.process}.items()]
        run = exchange.firehose(P2_SYMBOL, next_id, rate, duration_s, per_push)
        run.pop("sent")
        next_id = run["last_id"] + 1
        ended = time.monotonic()
        stored = 0
        while time.monotonic() - ended < drain_max_s:
            stored = _count(P2_SYMBOL, run["first_id"], run["last_id"])
            if stored >= run["emitted"]:
                break
            time.sleep(0.25)
        drain_s = time.monotonic() - ended
        sampling.set()
        cpu = {name: round(cpu_seconds(p.pid) - cpu0[name], 1) for name, p in everyone.items()}
        wall = duration_s + drain_s
        step = {
            "target_rate": rate, **run, "stored": stored, "lost": run["emitted"] - stored,
            "drain_s": round(drain_s, 1),
            "exchange_kept_up": run["achieved_rate"] >= 0.97 * rate,
            "sustained": stored >= run["emitted"] and drain_s <= drain_ok_s and run["achieved_rate"] >= 0.97 * rate,
            "cpu_s": cpu, "cpu_pct_of_one_core": {k: round(100 * v / wall) for k, v in cpu.items()},
            "cpu_us_per_trade": {k: round(1e6 * v / max(run["emitted"], 1), 1) for k, v in cpu.items()},
            "profiles": {p.name: p.summary() for p in profiles},
        }
        steps.append(step)
        print(f"P2: {rate:,}/s -> emitted {run['emitted']:,} at {run['achieved_rate']:,}/s, stored {stored:,}, "
              f"drained {drain_s:.1f} s after, sustained={step['sustained']} cpu%={step['cpu_pct_of_one_core']}",
              flush=True)
        if step["sustained"]:
            best = max(best, rate)
        else:
            break
    return {"duration_s": duration_s, "per_push": per_push, "steps": steps, "max_sustained_rate": best,
            "peak_mb": peak}


def run(stack: Stack, stamp: str, rates: list[int], duration_s: float, per_push: int = 1,
        p3_duration_s: float = 20, cpu_duration_s: float = 30, parts: frozenset = frozenset({"cpu", "p3"})) -> dict:
    """``parts``: "cpu" (CPU per trade), "p3" (latency and memory; P2 runs when ``rates``)."""
    result: dict = {}
    exchange = Exchange(stack)
    if "cpu" in parts:
        result["cpu_per_trade"] = cpu_per_trade(stack, exchange, duration_s=cpu_duration_s)
    if "p3" not in parts and not rates:
        stack.stop(exchange.process)
        return result
    producer, consumer = start_pipeline(stack, exchange)
    procs = {"producer": producer, "consumer": consumer}
    result["idle_mb"] = idle_footprint(procs)
    java = {"kafka": stack.kafka, "questdb": stack.questdb}
    result["idle_mb_jvm"] = {name: memory_mb(p.pid) for name, p in java.items()}
    print(f"P6: idle memory {result['idle_mb']} (JVMs {result['idle_mb_jvm']})", flush=True)

    print("P3: warming up (JIT compilers of Kafka and QuestDB) ...", flush=True)
    warm_up(exchange)
    print("P3: 1,000 trades/s latency ...", flush=True)
    everyone = {**procs, **java, "exchange": exchange.process}
    cpu0, wall0 = {name: cpu_seconds(p.pid) for name, p in everyone.items()}, time.monotonic()
    result["p3"] = p3_latency(exchange, 1_000_000, 1000, p3_duration_s)
    wall = time.monotonic() - wall0  # the whole pass: the firehose and the wait for the last rows
    result["p3"]["cpu_pct_of_one_core"] = {name: round(100 * (cpu_seconds(p.pid) - cpu0[name]) / wall)
                                           for name, p in everyone.items()}
    print(f"P3: {result['p3']['latency_ms']} cpu%={result['p3']['cpu_pct_of_one_core']}", flush=True)
    print("P3: again with a Kafka tap and py-spy, for the stages ...", flush=True)
    profiles = {name: Profile(p.pid, f"p3-{name}", int(p3_duration_s), stamp) for name, p in procs.items()}
    result["p3_stages"] = staged = p3_latency(exchange, 2_000_000, 1000, p3_duration_s, tap=True)
    staged["profiles"] = {name: profile.summary() for name, profile in profiles.items()}
    stages = ", ".join(f"{name} {staged[name + '_ms'].get('p50')}/{staged[name + '_ms'].get('p99')}"
                       for name in ("exchange_to_producer", "producer_to_kafka", "kafka_to_visible"))
    print(f"P3 with the tap: {staged['latency_ms']} (p50/p99 ms: {stages})", flush=True)

    print("P3: again with a bare kafka-python -> QuestDB loop in the consumer's place ...", flush=True)
    result["p3_bare"] = p3_bare(stack, exchange, consumer, p3_duration_s)
    print(f"P3 bare loop: {result['p3_bare']['latency_ms']}", flush=True)
    consumer = procs["consumer"] = stack.service("consumer", consumer.spec.env["KAFKA_TOPIC"],
                                                 consumer.spec.env["KAFKA_GROUP_ID"])

    if rates:
        result["p2"] = p2_steps(exchange, procs, java, rates, duration_s, stamp, per_push)
        result["load_mb"] = result["p2"].pop("peak_mb")
        result["load_mb_jvm"] = {name: memory_mb(p.pid) for name, p in java.items()}
    stack.stop(producer)
    stack.stop(consumer)
    stack.stop(exchange.process)
    return result


__all__ = ["run", "c"]

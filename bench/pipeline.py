"""P2 whole pipeline, P3 latency, and the producer/consumer half of P6 footprint.

The simulated OKX exchange (tests.okxsim, channel trades-all: one WebSocket push per
trade) runs in this process and prints trades; the real producer and consumer run as
subprocesses against the bench Kafka and QuestDB.

P3 first (on a small table): 1,000 trades/s; a poller asks QuestDB for the newest trade
id as fast as it answers; a trade's latency = the poll answer that first shows it - the
moment it was handed to the exchange to send (an upper bound: +1 query round trip).

P2: the rate is stepped; each step prints for ``duration`` s, then waits for the rows.
A step is sustained when every trade is in QuestDB (zero loss, DEDUP means distinct) and
the backlog drained within ``drain_ok_s`` of the end (the pipeline kept up, not merely
caught up later). CPU seconds per process show where the time goes.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from bench.common import PORTS, Profile, Stack, cpu_seconds, percentiles, rss_mb, scalar, sql
from stack import components as c
from tests.okxsim import OkxExchange

P2_SYMBOL, P3_SYMBOL = "P2-USDT", "P3-USDT"


class Emitter:
    """Prints trades for one symbol at a rate, with consecutive ids; remembers send times."""

    def __init__(self, exchange: OkxExchange, symbol: str, first_id: int) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.next_id = first_id
        self.sent_at: dict[int, float] = {}
        self.keep_times = False

    def run(self, rate: float, duration_s: float, tick_s: float = 0.01) -> dict:
        first = self.next_id
        started = time.monotonic()
        end = started + duration_s
        sym = self.symbol
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int(rate * (now - started)) - (self.next_id - first)
            if due > 0:
                due = min(due, max(1, int(rate * 0.1)))
                now_ms = int(time.time() * 1000)
                ts = str(now_ms)
                i0 = self.next_id
                batch = [{"instId": sym, "tradeId": str(i), "px": f"{30000 + (i % 991) * 0.1:.1f}",
                          "sz": f"0.{(i % 9999) + 1:05d}", "side": "buy" if i & 1 else "sell", "ts": ts}
                         for i in range(i0, i0 + due)]
                self.next_id += due
                sent = time.time()
                self.exchange.emit(batch)
                if self.keep_times:
                    for i in range(i0, i0 + due):
                        self.sent_at[i] = sent
            else:
                time.sleep(tick_s)
        elapsed = time.monotonic() - started
        emitted = self.next_id - first
        return {"first_id": first, "last_id": self.next_id - 1, "emitted": emitted,
                "achieved_rate": round(emitted / elapsed), "seconds": round(elapsed, 1)}


def _count(symbol: str, lo: int, hi: int) -> int:
    return int(scalar(f"select count() from trades where symbol = '{symbol}' and trade_id between {lo} and {hi}"))


def start_pipeline(stack: Stack, exchange: OkxExchange):
    topic = stack.topic("trades", 3)
    consumer = stack.service("consumer", topic, "bench-pipeline")
    producer = stack.service("producer", topic, None,
                             OKX_WS_URL=exchange.ws_url(), OKX_REST_URL=exchange.rest_url,
                             SYMBOLS=f"{P2_SYMBOL},{P3_SYMBOL}")
    deadline = time.monotonic() + 30
    while not (exchange.subscribed(P2_SYMBOL) and exchange.subscribed(P3_SYMBOL)):
        if time.monotonic() > deadline:
            raise RuntimeError("producer did not subscribe")
        time.sleep(0.1)
    return producer, consumer


def idle_footprint(procs: dict, settle_s: float = 5.0) -> dict:
    time.sleep(settle_s)
    return {name: rss_mb(p.pid) for name, p in procs.items()}


def p3_latency(emitter: Emitter, rate: float = 1000, duration_s: float = 20) -> dict:
    iso = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    emitter.keep_times = True
    emitter.sent_at.clear()
    visible_at: dict[int, float] = {}
    stop = threading.Event()
    polls = []

    def poll() -> None:
        seen = emitter.next_id - 1
        query = f"select max(trade_id) m from trades where timestamp >= '{iso}' and symbol = '{P3_SYMBOL}'"
        while not stop.is_set():
            t0 = time.time()
            top = int(scalar(query, default=0) or 0)
            t1 = time.time()
            polls.append((t1 - t0) * 1000)
            if top > seen:
                for i in range(seen + 1, top + 1):
                    visible_at[i] = t1
                seen = top

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    run = emitter.run(rate, duration_s)
    deadline = time.monotonic() + 30
    while len(visible_at) < run["emitted"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    poller.join(5)
    emitter.keep_times = False
    latencies = [(visible_at[i] - emitter.sent_at[i]) * 1000 for i in emitter.sent_at if i in visible_at]
    # Where the time goes: the producer stamps its receipt time (received_at, µs).
    rows = sql(f"select trade_id, cast(received_at as long) r from trades where timestamp >= '{iso}' "
               f"and symbol = '{P3_SYMBOL}'")
    to_producer = [(row["r"] / 1e6 - emitter.sent_at[row["trade_id"]]) * 1000 for row in rows
                   if row["trade_id"] in emitter.sent_at]
    producer_to_visible = [(visible_at[row["trade_id"]] - row["r"] / 1e6) * 1000 for row in rows
                           if row["trade_id"] in visible_at]
    return {"rate": rate, "run": run, "visible": len(latencies), "latency_ms": percentiles(latencies),
            "exchange_to_producer_ms": percentiles(to_producer),
            "producer_to_visible_ms": percentiles(producer_to_visible),
            "sql_poll_ms": percentiles(polls)}


def p2_steps(emitter: Emitter, procs: dict, java: dict, rates: list[int], duration_s: float, stamp: str,
             drain_ok_s: float = 5.0, drain_max_s: float = 60.0) -> dict:
    steps = []
    best = 0
    peak_rss = {name: 0.0 for name in procs}
    for rate in rates:
        print(f"P2: {rate:,} trades/s for {duration_s:.0f} s ...", flush=True)
        cpu0 = {name: cpu_seconds(p.pid) for name, p in {**procs, **java}.items()}
        cpu0["bench(exchange)"] = time.process_time()
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(1.0):
                for name, p in procs.items():
                    peak_rss[name] = max(peak_rss[name], rss_mb(p.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        profiles = [Profile(p.pid, f"p2-{rate}-{name}", int(min(15, duration_s / 2)), stamp)
                    for name, p in procs.items()]
        run = emitter.run(rate, duration_s)
        ended = time.monotonic()
        stored = 0
        while time.monotonic() - ended < drain_max_s:
            stored = _count(P2_SYMBOL, run["first_id"], run["last_id"])
            if stored >= run["emitted"]:
                break
            time.sleep(0.25)
        drain_s = time.monotonic() - ended
        sampling.set()
        cpu = {name: round(cpu_seconds(p.pid) - cpu0[name], 1) for name, p in {**procs, **java}.items()}
        cpu["bench(exchange)"] = round(time.process_time() - cpu0["bench(exchange)"], 1)
        wall = duration_s + drain_s
        step = {
            "target_rate": rate, **run, "stored": stored, "lost": run["emitted"] - stored,
            "drain_s": round(drain_s, 1),
            "exchange_kept_up": run["achieved_rate"] >= 0.97 * rate,
            "sustained": stored >= run["emitted"] and drain_s <= drain_ok_s and run["achieved_rate"] >= 0.97 * rate,
            "cpu_s": cpu, "cpu_pct_of_one_core": {k: round(100 * v / wall) for k, v in cpu.items()},
            "profiles": {p.name: p.summary() for p in profiles},
        }
        steps.append(step)
        print(f"P2: {rate:,}/s -> emitted {run['emitted']:,} at {run['achieved_rate']:,}/s, stored {stored:,}, "
              f"drained {drain_s:.1f} s after, sustained={step['sustained']} cpu%={step['cpu_pct_of_one_core']}",
              flush=True)
        if step["sustained"]:
            best = max(best, rate)
        else:
            # let any backlog land before the next measurement (or stop)
            break
    return {"duration_s": duration_s, "steps": steps, "max_sustained_rate": best, "peak_rss_mb": peak_rss}


def run(stack: Stack, stamp: str, rates: list[int], duration_s: float, p3_duration_s: float = 20) -> dict:
    result: dict = {}
    with OkxExchange(port=PORTS.exchange) as exchange:
        producer, consumer = start_pipeline(stack, exchange)
        procs = {"producer": producer, "consumer": consumer}
        result["idle_rss_mb"] = idle_footprint(procs)
        java = {"kafka": stack.kafka, "questdb": stack.questdb}
        result["idle_rss_mb_jvm"] = {name: rss_mb(p.pid) for name, p in java.items()}
        print(f"P6: idle RSS {result['idle_rss_mb']} (JVMs {result['idle_rss_mb_jvm']})", flush=True)

        p3_emitter = Emitter(exchange, P3_SYMBOL, 1_000_000)
        print("P3: 1,000 trades/s latency ...", flush=True)
        result["p3"] = p3_latency(p3_emitter, 1000, p3_duration_s)
        print(f"P3: {result['p3']['latency_ms']} (exchange->producer {result['p3']['exchange_to_producer_ms'].get('p50')} ms p50, "
              f"producer->visible {result['p3']['producer_to_visible_ms'].get('p50')} ms p50)", flush=True)

        p2_emitter = Emitter(exchange, P2_SYMBOL, 10_000_000)
        result["p2"] = p2_steps(p2_emitter, procs, java, rates, duration_s, stamp)
        result["load_rss_mb"] = result["p2"].pop("peak_rss_mb")
        result["load_rss_mb_jvm"] = {name: rss_mb(p.pid) for name, p in java.items()}
        stack.stop(producer)
        stack.stop(consumer)
    return result


__all__ = ["run", "c"]

"""P8: all of OKX at once. 600 instruments (400 SPOT, 200 SWAP; the ~580 live ones followed
by pattern), 2,000 trades/s in total with a realistic skew (a few busy, a long quiet tail:
tests.okxsim.trades.trade_rates), through the real producer, Kafka (12 partitions) and one,
then two consumers of one group.

Per pass: CPU (seconds over the market's minute, and µs per trade) and PSS of each service,
the trades printed and stored, and exchange-to-queryable latency from the consumers' own
histogram (gostream_consumer_exchange_to_stored_seconds: a trade's exchange time to QuestDB
acknowledging its batch; quantiles are bucket upper bounds, so "<= 0.1 s" means it fell in
the 0.05-0.1 s bucket).
"""

from __future__ import annotations

import re
import time
import urllib.request

from bench.common import PORTS, Stack, cpu_seconds, memory_mb, scalar
from bench.pipeline import Exchange
from stack import components as c

PATTERNS = "*-USDT,*-USDC,*-BTC,*-SWAP"
BUCKET = re.compile(r'^gostream_consumer_exchange_to_stored_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.M)


def _buckets(ports: list[int]) -> dict[float, float]:
    total: dict[float, float] = {}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            for le, count in BUCKET.findall(response.read().decode()):
                bound = float("inf") if le == "+Inf" else float(le)
                total[bound] = total.get(bound, 0.0) + float(count)
    return total


def _quantile(before: dict, after: dict, q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of what was observed between."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = counts[-1][1] if counts else 0
    if not total:
        return None
    return next(bound for bound, cumulative in counts if cumulative >= q * total)


def one_pass(stack: Stack, exchange: Exchange, consumers: int, total_rate: float, duration_s: float) -> dict:
    status = exchange._get("/sim/instruments")
    topic = stack.topic(f"p8-{consumers}", partitions=12)
    group = f"p8-{consumers}-group"
    procs = {f"consumer-{r + 1}": stack.start(c.consumer(PORTS, stack.env(topic, group), r)) for r in range(consumers)}
    procs["producer"] = stack.service("producer", topic, group, OKX_WS_URL=exchange.ws_url,
                                      OKX_REST_URL=exchange.rest_url, SYMBOLS=PATTERNS, OKX_INST_TYPES="SPOT,SWAP",
                                      HISTORY_WINDOW="0")
    live = status["by_state"]["live"]
    deadline = time.monotonic() + 120
    while len(exchange._get("/sim/status")["subscribed"]) < live:
        if time.monotonic() > deadline:
            raise RuntimeError("the producer did not subscribe every live instrument")
        time.sleep(0.5)
    consumer_ports = [c.consumer_port(PORTS, r) for r in range(consumers)]
    java = {"kafka": stack.kafka, "questdb": stack.questdb}
    cpu0 = {name: cpu_seconds(p.pid) for name, p in {**procs, **java, "exchange": exchange.process}.items()}
    hist0 = _buckets(consumer_ports)
    started_us = int(time.time() * 1e6)
    exchange._get(f"/sim/market?total_rate={total_rate}&duration={duration_s}&seed=1&inst_types=SPOT,SWAP")
    time.sleep(duration_s)
    while (market := exchange._get("/sim/status")["market"]).get("running"):
        time.sleep(0.5)
    emitted = market["emitted"]
    deadline = time.monotonic() + 120
    while (stored := int(scalar(f"select count() from trades where timestamp >= {started_us}"))) < emitted:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    cpu = {name: round(cpu_seconds(p.pid) - cpu0[name], 1)
           for name, p in {**procs, **java, "exchange": exchange.process}.items()}
    hist1 = _buckets(consumer_ports)
    memory = {name: memory_mb(p.pid) for name, p in procs.items()}
    for process in procs.values():
        stack.stop(process)
    return {"consumers": consumers, "instruments_live": live, "printed": emitted, "stored": stored,
            "achieved_rate": market.get("achieved_rate"), "seconds": market.get("seconds"),
            "cpu_s": cpu, "cpu_us_per_trade": {k: round(v * 1e6 / emitted, 1) for k, v in cpu.items() if emitted},
            "pss_mb": {k: v["pss"] for k, v in memory.items()},
            "stored_latency_s": {"p50_le": _quantile(hist0, hist1, 0.5), "p99_le": _quantile(hist0, hist1, 0.99)}}


def run(stack: Stack, total_rate: float = 2000, duration_s: float = 60) -> dict:
    # One exchange for both passes: the second market continues each symbol's ids where
    # the first stopped, as a real exchange would while the pipeline is reconfigured.
    exchange = Exchange(stack)
    exchange._get("/sim/instruments?populate=400,200&seed=1")
    passes = [one_pass(stack, exchange, n, total_rate, duration_s) for n in (1, 2)]
    stack.stop(exchange.process)
    return {"total_rate": total_rate, "duration_s": duration_s, "passes": passes}

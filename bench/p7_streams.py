"""P7 live terminals: how many concurrent /stream clients one api pod (default settings)
holds while the exchange prints 100 trades/s.

The simulated exchange -> producer -> Kafka -> consumer -> QuestDB pipeline runs for one
symbol; one api and one frontend with their defaults. For each step (N open streams, up to
10,000) a load generator of its own process (bench/p7_client.py, asyncio) opens N streams,
then the exchange prints RATE trades/s for DURATION s while this process asks /candles
(the terminal's request: the latest 1m bars) one request at a time and samples the api's
memory. Reported per step: streams connected, whether every stream received every trade,
delivery p50/p99 from the trade's exchange time, api RSS and RSS per 1,000 streams,
/candles p99 against its idle value (no stream open). Then one step through the
frontend's port (its worker model is what it is: gthread, 64 threads).
Loopback only.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request

from bench.common import PORTS, Stack, cpu_seconds, memory_mb, percentiles
from bench.pipeline import Exchange
from stack import components as c

SYMBOL = "P7-USDT"
RATE = 100
STEPS = (1, 1000, 2500, 5000, 10_000)  # 1: the pipeline's own delivery time, without fan-out
FRONTEND_STEP = 1000


def candles_latency(port: int, prefix: str, duration_s: float, stop: threading.Event | None = None) -> dict:
    url = f"http://127.0.0.1:{port}{prefix}/candles?symbol={SYMBOL}&interval=1m"
    took, errors = [], 0
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
            took.append((time.perf_counter() - started) * 1000)
        except OSError:
            errors += 1
        time.sleep(0.1)
    return {**percentiles(took), "errors": errors}


def drained(port: int, timeout_s: float = 60) -> None:
    """Wait until the api has let go of the streams the last step closed: it notices a closed
    connection when it next writes to it (a batch or a keep-alive, every 15 s when quiet), and
    until then the stream counts against STREAM_MAX."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        if any(line.startswith("gostream_api_open_streams ") and float(line.split()[1]) == 0 for line in text.splitlines()):
            return
        time.sleep(1)


class Client:
    def __init__(self, port: int, path: str, n: int) -> None:
        self.process = subprocess.Popen([c.PYTHON, "-m", "bench.p7_client", str(port), path, str(n)],
                                        cwd=c.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.opened = json.loads(self.process.stdout.readline() or "{}")

    def finish(self) -> dict:
        self.process.stdin.close()
        line = self.process.stdout.readline()
        self.process.wait(60)
        return json.loads(line or "{}")


def step(api, exchange: Exchange, port: int, prefix: str, n: int, first_id: int, duration_s: int) -> dict:
    started = time.monotonic()
    client = Client(port, f"{prefix}/stream?symbol={SYMBOL}&interval=1m", n)
    result: dict = {"streams": n, **client.opened, "connect_s": round(time.monotonic() - started, 1)}
    time.sleep(3)
    result["api_idle_rss_mb"] = memory_mb(api.pid).get("rss")
    peak = {"rss": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1):
            peak["rss"] = max(peak["rss"], memory_mb(api.pid).get("rss") or 0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lat: dict = {}
    probe = threading.Thread(target=lambda: lat.update(candles_latency(port, prefix, duration_s, done)), daemon=True)
    cpu_before = cpu_seconds(api.pid)
    probe.start()
    run = exchange.firehose(SYMBOL, first_id, RATE, duration_s)
    time.sleep(3)  # the last trades reach the streams
    done.set()
    probe.join()
    result["api_cpu_pct"] = round((cpu_seconds(api.pid) - cpu_before) / (duration_s + 3) * 100)
    got = client.finish()
    result.update(got)
    result["emitted"] = run["emitted"]
    result["every_stream_every_trade"] = got.get("streams_reading") == result.get("connected") and \
        got.get("trades_min") == run["emitted"] == got.get("trades_max")
    result["candles_ms"] = lat
    result["api_peak_rss_mb"] = peak["rss"]
    return result


def run(stack: Stack, duration_s: int = 20, steps=STEPS) -> dict:
    exchange = Exchange(stack)
    topic = stack.topic("p7-trades", 3)
    stack.service("consumer", topic, "bench-p7")
    stack.service("producer", topic, None, OKX_WS_URL=exchange.ws_url, OKX_REST_URL=exchange.rest_url, SYMBOLS=SYMBOL)
    deadline = time.monotonic() + 30
    while not exchange.subscribed(SYMBOL):
        if time.monotonic() > deadline:
            raise RuntimeError("producer did not subscribe")
        time.sleep(0.1)
    env = c.service_env(PORTS, LOG_LEVEL="WARNING")
    api = stack.start(c.api(PORTS, env))
    frontend = stack.start(c.frontend(PORTS, env))
    first_id = 7_000_000
    exchange.firehose(SYMBOL, first_id, RATE, 10)  # history to draw, and warm-up
    first_id += 10 * RATE + 1000
    time.sleep(2)
    result: dict = {"rate": RATE, "duration_s": duration_s, "api_idle_rss_mb": memory_mb(api.pid).get("rss"),
                    "candles_idle_ms": candles_latency(PORTS.api, "", 15), "steps": []}
    for n in steps:
        result["steps"].append(step(api, exchange, PORTS.api, "", n, first_id, duration_s))
        first_id += duration_s * RATE + 1000
        drained(PORTS.api)
        print(json.dumps(result["steps"][-1]), flush=True)
    result["frontend_step"] = step(api, exchange, PORTS.frontend, "/api", FRONTEND_STEP, first_id, duration_s)
    result["frontend_step"]["frontend_peak_rss_mb"] = memory_mb(frontend.pid).get("rss")
    idle = result["candles_idle_ms"].get("p99") or 0
    best = [s for s in result["steps"] if s.get("every_stream_every_trade") and s.get("latency_ms", {}).get("p99", 1e9) <= 250
            and (s["candles_ms"].get("p99") or 1e9) <= 1.5 * idle]
    result["held_streams"] = max((s["streams"] for s in best), default=0)
    for s in result["steps"]:
        if s.get("connected"):
            s["api_rss_mb_per_1000_streams"] = round(((s.get("api_idle_rss_mb") or 0) - (result["api_idle_rss_mb"] or 0))
                                                     / s["connected"] * 1000, 1)
    return result

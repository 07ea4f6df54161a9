"""The producer's Kafka hand-off alone, beside CPU per trade (issue 18).

Our ``Publisher`` (and kafka-python under it), built from the producer's own settings, is
fed trades from a plain loop at the CPU steps' rates: no WebSocket, no parsing, no feed.
Its CPU per trade (our publisher thread and kafka-python's threads, from /proc; the feeding
loop is shown apart) is the part of the producer's figure that the Kafka client and our
hand-off to it cost, measured in the same run; what is left of the producer's figure is
the exchange side. kafka-python's cost is mostly per produce request (one per linger and
round trip, whatever the rate), so this floor falls as the rate rises.

Run by ``python -m bench --only cpu``; one subprocess per rate:
``python -m bench.publisher_floor --rate 10000 --seconds 30`` with the services' env.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

from bench.common import Stack, stat_cpu_seconds
from stack import components as c

TICK_S = 0.001  # trades are offered in a burst per millisecond, as a busy feed delivers them


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds so far of this process's threads, by part: the feeding loop (the main
    thread, the exchange side's stand-in), our publisher thread, and kafka-python's own."""
    parts = {"feeding loop": 0.0, "publisher": 0.0, "kafka-python": 0.0}
    for thread in threading.enumerate():
        part = ("feeding loop" if thread is threading.main_thread()
                else "publisher" if thread.name == "publisher" else "kafka-python")
        parts[part] += stat_cpu_seconds(f"/proc/self/task/{thread.native_id}/stat")
    return parts


def measure(rate: int, seconds: float, drain_max_s: float = 30.0) -> dict:
    from gostream.common.settings import kafka_client_config, load
    from gostream.common.trade import Trade
    from gostream.producer.publisher import Publisher
    from gostream.producer.settings import ProducerSettings

    settings = load(ProducerSettings)
    publisher = Publisher(kafka_client_config(settings), settings.kafka_topic, settings.buffer_max_trades,
                          batch_max=settings.publish_batch_max).start()
    now_ms = int(time.time() * 1000)
    trades = [Trade("FLOOR-USDT", 1 + i, 64_000.5 + i % 7, 0.0012, "buy", now_ms, now_ms * 1000)
              for i in range(int(rate * seconds) + 1000)]

    def wait_published(count: int) -> None:
        deadline = time.monotonic() + drain_max_s
        while publisher.published < count and time.monotonic() < deadline:
            time.sleep(0.01)

    for trade in trades[:1000]:  # connections, metadata and the first batches: not measured
        publisher.offer(trade)
    wait_published(1000)
    offered, started, cpu0, threads0 = 1000, time.monotonic(), time.process_time(), thread_cpu_s()
    while (elapsed := time.monotonic() - started) < seconds:
        due = min(1000 + int(rate * elapsed), len(trades))
        for trade in trades[offered:due]:
            publisher.offer(trade)
        offered = due
        time.sleep(TICK_S)
    wait_published(offered)
    cpu = time.process_time() - cpu0
    threads = {part: spent - threads0[part] for part, spent in thread_cpu_s().items()}
    published = publisher.published
    publisher.close(timeout_s=10)
    measured = max(offered - 1000, 1)
    hand_off = threads["publisher"] + threads["kafka-python"]
    return {"rate": rate, "offered": measured, "published": published - 1000, "dropped": publisher.dropped,
            "cpu_s": round(cpu, 2), "cpu_us_per_trade": round(1e6 * hand_off / measured, 1),
            "by_thread_us_per_trade": {part: round(1e6 * spent / measured, 1) for part, spent in threads.items()}}


def run(stack: Stack, src: str, rates: tuple[int, ...], seconds: float) -> dict:
    """The floor at each rate, each in a fresh process on a topic of its own."""
    steps = []
    for rate in rates:
        topic = stack.topic(f"floor-{rate}", 3)
        # The tree's own gostream first (as the CPU passes run it), then the repo for bench.
        env = {**os.environ, **stack.env(topic), "PYTHONPATH": f"{src}:{c.ROOT}"}
        done = subprocess.run([sys.executable, "-m", "bench.publisher_floor", "--rate", str(rate),
                               "--seconds", str(seconds)], env=env,
                              capture_output=True, text=True, timeout=seconds + 120)
        if done.returncode != 0:
            raise RuntimeError(f"publisher floor at {rate}/s failed: {done.stderr[-2000:]}")
        step = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"CPU per trade, the Kafka hand-off alone (Publisher + kafka-python): {rate:,}/s -> "
              f"{step['cpu_us_per_trade']} µs (by thread {step['by_thread_us_per_trade']}; published "
              f"{step['published']:,} of {step['offered']:,})", flush=True)
        steps.append(step)
    return {"steps": steps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, required=True, help="trades offered per second")
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.rate, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

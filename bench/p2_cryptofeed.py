"""P2 side by side with cryptofeed (PyPI), the collector most Python users would pick: its
OKX trades feed with its Kafka backend, and our producer, each on its own symbol of one
simulated exchange, offered the same steps of trades/s one after the other (two cores).

What is compared is the collector's half of P2: exchange -> Kafka. Per step: trades the
exchange printed (the firehose's own count), trades found in Kafka afterwards (the topic
read back and decoded: distinct trade ids of the step; ours writes records of many
trades, cryptofeed one JSON record per trade), lost = printed - found, how long after the
step the topic stopped growing, and CPU µs per printed trade of the collector's process
(utime + stime from /proc, from the step's start until its topic stopped growing).
A step is sustained when nothing is lost, the topic stopped growing within 5 s of the
step's end and the exchange printed >= 97 % of the asked rate (a WebSocket reader that
falls behind slows the firehose, which waits on the socket).

cryptofeed runs from a venv of its own (its websockets/aiokafka pins must not touch the
project's), created under .cache/ on first use with pip from PyPI; bench/cryptofeed_okx.py
is the launcher, pointing cryptofeed at the simulator by subclassing its OKX feed's
endpoint attributes (no fork, no patch of its code).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import PORTS, Stack, cpu_seconds
from bench.pipeline import Exchange
from stack import components as c

CRYPTOFEED = "cryptofeed[kafka]==2.4.1"
VENV = c.CACHE / "bench-venvs" / "cryptofeed"
LAUNCHER = Path(__file__).with_name("cryptofeed_okx.py")
CF_SYMBOL, OURS_SYMBOL = "P2CF-USDT", "P2OURS-USDT"
CF_KEY = "p2cf"  # cryptofeed's topic: <key>-OKX-<symbol>
CF_TOPIC = f"{CF_KEY}-OKX-{CF_SYMBOL}"
OURS_TOPIC = "p2cf-ours"


def ensure_venv() -> Path:
    """cryptofeed's venv, created once (pip, PyPI); returns its python."""
    python = VENV / "bin" / "python"
    marker = VENV / ".installed"
    if python.exists() and marker.exists() and marker.read_text().strip() == CRYPTOFEED:
        return python
    print(f"P2 cryptofeed: creating {VENV} with {CRYPTOFEED} from PyPI ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", CRYPTOFEED],
                   check=True)
    marker.write_text(CRYPTOFEED + "\n")
    return python


def versions(python: Path) -> dict:
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) "
                          "for p in ('cryptofeed', 'aiokafka', 'websockets', 'uvloop', 'yapic.json')}))"],
                         capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr.strip()[-300:]}


def _list(exchange: Exchange, symbol: str) -> None:
    """List ``symbol`` in the simulator's catalogue (cryptofeed only follows listed ones)."""
    with urllib.request.urlopen(f"{exchange.rest_url}/sim/list?instId={symbol}&instType=SPOT", timeout=30):
        pass


def cryptofeed_spec(python: Path, exchange: Exchange, logs: Path) -> c.Spec:
    logs.mkdir(parents=True, exist_ok=True)
    return c.Spec(
        name="cryptofeed",
        argv=[str(python), str(LAUNCHER), "--ws", exchange.ws_url, "--rest", exchange.rest_url,
              "--bootstrap", f"127.0.0.1:{PORTS.kafka}", "--symbol", CF_SYMBOL, "--key", CF_KEY],
        ready=lambda: exchange.subscribed(CF_SYMBOL) > 0,
        url="(no endpoint)",
        cwd=logs,  # its feedhandler.log
    )


class Topic:
    """A topic's end offsets, and its trades read back between two sets of offsets."""

    def __init__(self, name: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.name = name
        self.consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{PORTS.kafka}", enable_auto_commit=False,
                                      max_poll_records=5000)
        self.partitions = [TopicPartition(name, p) for p in sorted(self.consumer.partitions_for_topic(name))]

    def ends(self) -> dict:
        return self.consumer.end_offsets(self.partitions)

    def ids(self, start: dict, end: dict, ids_of) -> set[int]:
        """Trade ids of the records between ``start`` and ``end`` (``ids_of(value)`` says
        which a record holds; a record it cannot read counts none)."""
        seen: set[int] = set()
        todo = {tp for tp in self.partitions if end[tp] > start[tp]}
        if not todo:
            return seen
        self.consumer.assign(list(todo))
        for tp in todo:
            self.consumer.seek(tp, start[tp])
        deadline = time.monotonic() + 600
        while todo and time.monotonic() < deadline:
            for tp, records in self.consumer.poll(timeout_ms=500).items():
                for record in records:
                    if record.offset < end[tp]:
                        try:
                            seen.update(ids_of(record.value))
                        except (ValueError, KeyError, TypeError):
                            pass
                if self.consumer.position(tp) >= end[tp]:
                    todo.discard(tp)
        return seen

    def close(self) -> None:
        self.consumer.close()


def _ours_ids(value: bytes) -> list[int]:
    from gostream.common.trade import decode

    return [int(t.trade_id) for t in decode(value)]


def _cryptofeed_ids(value: bytes) -> list[int]:
    return [int(json.loads(value)["id"])]


def settle(topic: Topic, since: float, settle_s: float = 2.0, drain_max_s: float = 60.0) -> tuple[dict, float]:
    """Wait until ``topic`` stopped growing for ``settle_s`` (at most ``drain_max_s`` after
    ``since``): its end offsets then, and how long after ``since`` it last grew."""
    last_growth = since
    ends = topic.ends()
    while time.monotonic() - since < drain_max_s and time.monotonic() - last_growth < settle_s:
        time.sleep(0.25)
        now = topic.ends()
        if now != ends:
            ends, last_growth = now, time.monotonic()
    return ends, max(0.0, last_growth - since)


def step(exchange: Exchange, topic: Topic, ids_of, pid: int, symbol: str, first_id: int, rate: int,
         duration_s: float, per_push: int, drain_ok_s: float = 5.0) -> dict:
    start = topic.ends()
    cpu0 = cpu_seconds(pid)
    run = exchange.firehose(symbol, first_id, rate, duration_s, per_push)
    run.pop("sent", None)
    ends, drain_s = settle(topic, time.monotonic())
    cpu = cpu_seconds(pid) - cpu0
    found = topic.ids(start, ends, ids_of)
    delivered = sum(1 for i in found if run["first_id"] <= i <= run["last_id"])
    emitted = max(run["emitted"], 1)
    return {"target_rate": rate, "achieved_rate": run["achieved_rate"], "emitted": run["emitted"],
            "first_id": run["first_id"], "last_id": run["last_id"],
            "records": sum(ends[tp] - start[tp] for tp in ends), "delivered": delivered,
            "lost": run["emitted"] - delivered, "drain_s": round(drain_s, 1),
            "delivered_per_s": round(delivered / (run["seconds"] + drain_s)) if run["seconds"] else 0,
            "sustained": delivered >= run["emitted"] and drain_s <= drain_ok_s and run["achieved_rate"] >= 0.97 * rate,
            "cpu_s": round(cpu, 2), "cpu_us_per_trade": round(1e6 * cpu / emitted, 1),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def steps(name: str, exchange: Exchange, topic: Topic, ids_of, pid: int, symbol: str, rates: list[int],
          duration_s: float, per_push: int) -> dict:
    # A warm-up first (imports, connections, JIT of the broker), not measured; the steps
    # continue its ids, so no collector sees a gap to backfill.
    next_id = exchange.firehose(symbol, 1, 1000, 5)["last_id"] + 1
    settle(topic, time.monotonic(), drain_max_s=120)
    out, best = [], 0
    for rate in rates:
        s = step(exchange, topic, ids_of, pid, symbol, next_id, rate, duration_s, per_push)
        next_id = s["last_id"] + 1
        out.append(s)
        print(f"P2 {name}: {rate:,}/s -> printed {s['emitted']:,} at {s['achieved_rate']:,}/s, in Kafka "
              f"{s['delivered']:,} (lost {s['lost']:,}), topic still growing {s['drain_s']} s after, "
              f"CPU {s['cpu_us_per_trade']} µs/trade, sustained={s['sustained']}", flush=True)
        if s["sustained"]:
            best = max(best, rate)
        else:
            break
    return {"steps": out, "max_sustained_rate": best}


def run(stack: Stack, rates: list[int], duration_s: float, per_push: int = 1) -> dict:
    result: dict = {"duration_s": duration_s, "per_push": per_push, "rates": rates}
    try:
        python = ensure_venv()
    except (OSError, subprocess.CalledProcessError) as exc:
        result["cryptofeed"] = {"measured": False, "why": f"cryptofeed could not be installed from PyPI: {exc}"}
        python = None
    exchange = Exchange(stack)
    try:
        for symbol in (CF_SYMBOL, OURS_SYMBOL):
            _list(exchange, symbol)
        stack.topic(OURS_TOPIC, 3)
        stack.topic(CF_TOPIC, 3)

        # ours: the producer alone (no consumer: the Kafka half of P2), one symbol
        producer = stack.service("producer", OURS_TOPIC, None, OKX_WS_URL=exchange.ws_url,
                                 OKX_REST_URL=exchange.rest_url, SYMBOLS=OURS_SYMBOL, HISTORY_WINDOW="0")
        topic = Topic(OURS_TOPIC)
        try:
            result["ours"] = steps("ours", exchange, topic, _ours_ids, producer.pid, OURS_SYMBOL, rates,
                                   duration_s, per_push)
        finally:
            topic.close()
            stack.stop(producer)

        if python is not None:
            process = stack.start(cryptofeed_spec(python, exchange, stack.work / "cryptofeed"), 120)
            topic = Topic(CF_TOPIC)
            try:
                cf = steps("cryptofeed", exchange, topic, _cryptofeed_ids, process.pid, CF_SYMBOL, rates,
                           duration_s, per_push)
            finally:
                topic.close()
                stack.stop(process)
            result["cryptofeed"] = {"measured": True, **cf, "versions": versions(python),
                                    "settings": "TradeKafka defaults (aiokafka: acks=1, linger_ms=0, no idempotence; "
                                                "one record per trade; each send awaited before the next)"}
    finally:
        stack.stop(exchange.process)
    return result

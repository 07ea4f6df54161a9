"""Chaos for the ingest path: a steady trade stream while processes are killed and
dependencies vanish, then a check that QuestDB holds exactly what the exchange printed.

Everything runs for real on ports of its own (default + 3000): the simulated OKX
exchange, a Kafka broker, a QuestDB server, the consumer and the producer. The harness
plays Kubernetes: it restarts what it killed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from stack import components as c
from stack.process import Process
from tests.okxsim import OkxExchange

log = logging.getLogger("chaos")
SYMBOL = "CHAOS-USDT"


@dataclass
class Plan:
    duration_s: float = 100.0  # how long the exchange prints trades
    rate: float = 100.0  # trades per second
    ws_drop_every_s: float = 10.0  # the WebSocket is cut this often ...
    ws_down_s: float = 1.5  # ... and refused this long (those trades exist only over REST)
    consumer_kills_at: tuple[float, ...] = (12.0, 47.0, 81.0)
    kafka_restart_at: float = 24.0
    producer_kill_at: float = 36.0
    questdb_stop_at: float = 58.0
    questdb_down_s: float = 15.0


@dataclass
class Report:
    injected: list[str] = field(default_factory=list)
    emitted: int = 0
    stored: int = 0
    distinct: int = 0
    missing: list[int] = field(default_factory=list)
    unexpected: list[int] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.stored == self.distinct == self.emitted and not self.missing and not self.unexpected
                and not self.mismatched)

    def summary(self) -> str:
        lines = [f"injected ({len(self.injected)}):"] + [f"  {line}" for line in self.injected]
        lines.append(f"emitted {self.emitted} trades; stored {self.stored} rows, {self.distinct} distinct ids")
        lines.append(f"missing {len(self.missing)}, unexpected {len(self.unexpected)}, "
                     f"values differing {len(self.mismatched)}")
        for name in ("missing", "unexpected", "mismatched"):
            if getattr(self, name):
                lines.append(f"  first {name}: {getattr(self, name)[:10]}")
        lines.append("RESULT: " + ("exactly once" if self.ok else "LOSS OR DUPLICATION"))
        return "\n".join(lines)


class Chaos:
    def __init__(self, workdir: Path, plan: Plan, port_offset: int = 3000) -> None:
        self.plan = plan
        self.ports = c.Ports().shifted(port_offset)
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.report = Report()
        self.exchange = OkxExchange(port=self.ports.exchange)
        self.tape: list[dict] = []
        self._t0 = 0.0
        env = c.service_env(
            self.ports,
            KAFKA_TOPIC="trades",
            KAFKA_DLQ_TOPIC="trades.dlq",
            OKX_WS_URL=f"ws://127.0.0.1:{self.ports.exchange}/ws/v5/business",
            OKX_REST_URL=f"http://127.0.0.1:{self.ports.exchange}",
            SYMBOLS=SYMBOL,
            RECONNECT_INITIAL_DELAY_S="0.2",
            RECONNECT_MIN_DELAY_S="0.5",
            RECONNECT_MAX_DELAY_S="2",
            PING_INTERVAL_S="5",
            PONG_TIMEOUT_S="3",
            QUESTDB_RETRY_TIMEOUT_S="2",
            RETRY_MAX_DELAY_S="4",
            KAFKA_SESSION_TIMEOUT_MS="6000",
        )
        self.kafka = Process(c.kafka(workdir, self.ports), self.logs)
        self.questdb = Process(c.questdb(workdir, self.ports), self.logs)
        self.consumer = Process(c.consumer(self.ports, env), self.logs)
        self.producer = Process(c.producer(self.ports, env), self.logs)

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        c.ensure_jars()
        self.exchange.start()
        self.kafka.start().wait_ready(120)
        c.ensure_topics(self.ports.kafka, {"trades": 3, "trades.dlq": 1})
        self.questdb.start().wait_ready(120)
        self.consumer.start().wait_ready(60)
        self.producer.start().wait_ready(60)

    def stop(self) -> None:
        for process in (self.producer, self.consumer, self.questdb, self.kafka):
            process.stop()
        self.exchange.stop()

    def execute(self) -> Report:
        """Start everything, run the plan, stop everything; the report says what was found."""
        try:
            self.start()
            return self.run()
        finally:
            self.stop()

    # -- the run --------------------------------------------------------------
    def note(self, what: str) -> None:
        line = f"t={time.monotonic() - self._t0:6.1f}s {what}"
        self.report.injected.append(line)
        log.info(line)

    def run(self) -> Report:
        self._t0 = time.monotonic()
        emitter = threading.Thread(target=self._emit, name="emitter", daemon=True)
        emitter.start()
        events = sorted(
            [(t, "kill-consumer") for t in self.plan.consumer_kills_at]
            + [(self.plan.kafka_restart_at, "restart-kafka"), (self.plan.producer_kill_at, "kill-producer"),
               (self.plan.questdb_stop_at, "stop-questdb")]
            + [(t, "drop-ws") for t in _every(self.plan.ws_drop_every_s, self.plan.duration_s)]
        )
        for at, event in events:
            if at >= self.plan.duration_s:
                continue
            _sleep_until(self._t0 + at)
            getattr(self, event.replace("-", "_"))()
        emitter.join()
        self.note(f"exchange stopped printing after {self.report.emitted} trades")
        return self.verify()

    def _emit(self) -> None:
        next_id, price, tick = 1_000_000, 30_000.0, 0.1
        per_tick, carry = self.plan.rate * tick, 0.0
        deadline = self._t0 + self.plan.duration_s
        while time.monotonic() < deadline:
            carry += per_tick
            n, carry = int(carry), carry - int(carry)
            now_ms = int(time.time() * 1000)
            batch = []
            for i in range(n):
                price = round(price + ((next_id * 7919) % 21 - 10) * 0.1, 1)
                batch.append({"instId": SYMBOL, "tradeId": str(next_id), "px": f"{price:.1f}",
                              "sz": f"0.{(next_id * 104729) % 99999 + 1:05d}", "side": ("buy", "sell")[next_id % 2],
                              "ts": str(now_ms)})
                next_id += 1
            if batch:
                self.exchange.emit(batch)
                self.tape.extend(batch)
                self.report.emitted += len(batch)
            time.sleep(tick)

    # -- faults ---------------------------------------------------------------
    def drop_ws(self) -> None:
        self.exchange.accepting = False
        self.exchange.drop_connections()
        time.sleep(self.plan.ws_down_s)
        self.exchange.accepting = True
        self.note(f"WebSocket cut, connections refused for {self.plan.ws_down_s} s")

    def kill_consumer(self) -> None:
        os.kill(self.consumer.pid, signal.SIGKILL)
        self.consumer.popen.wait()
        self.note("consumer SIGKILLed (mid-batch), restarted")
        self.consumer.start()

    def kill_producer(self) -> None:
        os.kill(self.producer.pid, signal.SIGKILL)
        self.producer.popen.wait()
        time.sleep(2)
        self.note("producer SIGKILLed, restarted after 2 s")
        self.producer.start()

    def restart_kafka(self) -> None:
        self.kafka.stop()
        self.note("Kafka broker stopped")
        self.kafka.start().wait_ready(120)
        self.note("Kafka broker back")

    def stop_questdb(self) -> None:
        self.questdb.stop()
        self.note(f"QuestDB stopped for {self.plan.questdb_down_s} s")
        time.sleep(self.plan.questdb_down_s)
        self.questdb.start().wait_ready(120)
        self.note("QuestDB back")

    # -- the verdict ----------------------------------------------------------
    def rows(self) -> list[dict]:
        return _sql(self.ports.questdb_http,
                    f"select trade_id, price, size, side, timestamp from trades where symbol = '{SYMBOL}'")

    def verify(self, timeout_s: float = 180.0) -> Report:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if len(self.rows()) >= self.report.emitted:
                    break
            except OSError:
                pass
            time.sleep(1)
        time.sleep(2)  # anything still arriving would be a duplicate: let it land
        rows = self.rows()
        expected = {int(t["tradeId"]): t for t in self.tape}
        stored = {r["trade_id"]: r for r in rows}
        self.report.stored = len(rows)
        self.report.distinct = len(stored)
        self.report.missing = sorted(set(expected) - set(stored))
        self.report.unexpected = sorted(set(stored) - set(expected))
        for trade_id in sorted(set(expected) & set(stored)):
            want, got = expected[trade_id], stored[trade_id]
            if (float(want["px"]), float(want["sz"]), want["side"]) != (got["price"], got["size"], got["side"]) \
                    or _ms(got["timestamp"]) != int(want["ts"]):
                self.report.mismatched.append(trade_id)
        return self.report


def _every(period: float, until: float) -> list[float]:
    return [period * i for i in range(1, int(until / period) + 1)]


def _sleep_until(when: float) -> None:
    time.sleep(max(0.0, when - time.monotonic()))


def _sql(port: int, query: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/exec?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    names = [col["name"] for col in body["columns"]]
    return [dict(zip(names, row)) for row in body["dataset"]]


def _ms(iso: str) -> int:
    from datetime import datetime, timedelta, timezone

    moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)

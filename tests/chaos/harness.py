"""Chaos for the ingest path: a steady trade stream while processes are killed,
dependencies vanish and OKX's REST misbehaves, then a check that QuestDB holds exactly
what the exchange printed and that the producer's completeness audit says so too.

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
from tests.conftest import metric
from tests.okxsim import OkxExchange

log = logging.getLogger("chaos")
SYMBOL = "CHAOS-USDT"
QUIET = "QUIET-USDT"  # a trade every few seconds, on the busy symbol's partition when there is one


@dataclass
class Plan:
    """When each fault happens (seconds from the start; None: never)."""

    duration_s: float = 100.0  # how long the exchange prints trades
    rate: float = 100.0  # trades per second
    ws_drop_every_s: float = 10.0  # the WebSocket is cut this often ...
    ws_down_s: float = 1.5  # ... and refused this long (those trades exist only over REST)
    consumer_kills_at: tuple[float, ...] = (12.0, 47.0, 81.0)
    kafka_restart_at: float | None = 24.0
    producer_kill_at: float | None = 36.0
    questdb_stop_at: float | None = 58.0
    questdb_down_s: float = 15.0
    partitions: int = 3
    quiet_every_s: float | None = None  # the quiet symbol prints this often
    # OKX REST: down (503) for a while, so the gaps the WebSocket cuts open meanwhile
    # cannot be filled live; the producer SIGTERMed and SIGKILLed while fills are pending;
    # 429 to every other request from some point on; history lagging behind the feed.
    rest_down_at: float | None = None
    rest_down_s: float = 60.0
    producer_term_at: float | None = None
    producer_kills_at: tuple[float, ...] = ()
    rest_429_from: float | None = None
    rest_lag_from: float | None = None
    rest_lag_s: float = 5.0
    # The producer down while every record in the topic is deleted (as retention would).
    topic_emptied_at: float | None = None
    producer_down_s: float = 5.0

    @classmethod
    def rest_faults(cls, duration_s: float = 110.0, rate: float = 100.0) -> Plan:
        """The completeness faults only (the short CI form); fractions of the duration."""
        d = duration_s
        return cls(duration_s=d, rate=rate, consumer_kills_at=(), kafka_restart_at=None, producer_kill_at=None,
                   questdb_stop_at=None, partitions=1, quiet_every_s=3.0, rest_down_at=0.1 * d,
                   rest_down_s=0.5 * d, producer_term_at=0.25 * d, producer_kills_at=(0.42 * d,),
                   rest_429_from=0.65 * d, rest_lag_from=0.7 * d, topic_emptied_at=0.8 * d)


@dataclass
class Report:
    injected: list[str] = field(default_factory=list)
    emitted: int = 0
    stored: int = 0
    distinct: int = 0
    missing: list[int] = field(default_factory=list)
    unexpected: list[int] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)
    # What the producer's audit says at the end: ids missing per symbol, open ledger holes.
    audit_missing: dict[str, float] = field(default_factory=dict)
    ledger_open: int = 0
    ledger_closed: int = 0

    @property
    def ok(self) -> bool:
        return (self.stored == self.distinct == self.emitted and not self.missing and not self.unexpected
                and not self.mismatched and not any(self.audit_missing.values()) and self.ledger_open == 0)

    def summary(self) -> str:
        lines = [f"injected ({len(self.injected)}):"] + [f"  {line}" for line in self.injected]
        lines.append(f"emitted {self.emitted} trades; stored {self.stored} rows, {self.distinct} distinct ids")
        lines.append(f"missing {len(self.missing)}, unexpected {len(self.unexpected)}, "
                     f"values differing {len(self.mismatched)}")
        lines.append(f"audit: missing {self.audit_missing}; ledger holes open {self.ledger_open}, "
                     f"closed {self.ledger_closed}")
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
            SYMBOLS=f"{SYMBOL},{QUIET}" if plan.quiet_every_s else SYMBOL,
            RECONNECT_INITIAL_DELAY_S="0.2",
            RECONNECT_MIN_DELAY_S="0.5",
            RECONNECT_MAX_DELAY_S="2",
            PING_INTERVAL_S="5",
            PONG_TIMEOUT_S="3",
            QUESTDB_RETRY_TIMEOUT_S="2",
            RETRY_MAX_DELAY_S="4",
            KAFKA_SESSION_TIMEOUT_MS="6000",
            AUDIT_INTERVAL_S="2",
            AUDIT_SETTLE_S="3",
            HOLE_RETRY_MIN_S="1",
            HOLE_RETRY_MAX_S="5",
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
        c.ensure_topics(self.ports.kafka, {"trades": self.plan.partitions, "trades.dlq": 1})
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
        p = self.plan
        events = sorted(
            [(t, "kill-consumer") for t in p.consumer_kills_at]
            + [(t, "kill-producer") for t in (p.producer_kill_at, *p.producer_kills_at)]
            + [(p.kafka_restart_at, "restart-kafka"), (p.questdb_stop_at, "stop-questdb"),
               (p.rest_down_at, "rest-down"), (p.producer_term_at, "term-producer"),
               (p.rest_429_from, "rest-429"), (p.rest_lag_from, "rest-lag"), (p.topic_emptied_at, "empty-topic")]
            + [(t, "drop-ws") for t in _every(p.ws_drop_every_s, p.duration_s)]
            , key=lambda event: (event[0] is None, event[0] or 0))
        for at, event in events:
            if at is None or at >= self.plan.duration_s:
                continue
            _sleep_until(self._t0 + at)
            getattr(self, event.replace("-", "_"))()
        emitter.join()
        self.note(f"exchange stopped printing after {self.report.emitted} trades")
        return self.verify()

    def _emit(self) -> None:
        next_id, price, tick = 1_000_000, 30_000.0, 0.1
        quiet_id, quiet_due = 7_000_000, self._t0
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
            if self.plan.quiet_every_s and time.monotonic() >= quiet_due:
                quiet_due += self.plan.quiet_every_s
                batch.append({"instId": QUIET, "tradeId": str(quiet_id), "px": "1.2345", "sz": "10",
                              "side": ("buy", "sell")[quiet_id % 2], "ts": str(now_ms)})
                quiet_id += 1
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
        pending = self._rest_jobs()
        os.kill(self.producer.pid, signal.SIGKILL)
        self.producer.popen.wait()
        self._printed_for(2)
        self.note(f"producer SIGKILLed with {pending} REST fills pending, restarted after 2 s of trades")
        self.producer.start()

    def term_producer(self) -> None:
        pending = self._rest_jobs()
        self.producer.stop()
        self._printed_for(2)
        self.note(f"producer SIGTERMed with {pending} REST fills pending, restarted after 2 s of trades")
        self.producer.start()

    def _printed_for(self, seconds: float) -> None:
        """Keep a fault on until the exchange has printed ``seconds`` worth of trades (a
        condition, not a nap: a loaded machine prints late, and the fault must cover trades)."""
        target = self.report.emitted + int(self.plan.rate * seconds)
        deadline = time.monotonic() + 10 * seconds + 30
        printing_until = self._t0 + self.plan.duration_s
        while self.report.emitted < target and time.monotonic() < min(deadline, printing_until):
            time.sleep(0.05)

    def _rest_jobs(self) -> float:
        return metric(self.ports.producer, "gostream_producer_rest_jobs")

    def rest_down(self) -> None:
        self.exchange.rest_outage(self.plan.rest_down_s)
        self.note(f"REST down (503) for {self.plan.rest_down_s:.0f} s")

    def rest_429(self) -> None:
        self.exchange.rest_429_ratio = 0.5
        self.note("REST answers 429 to every other request from now on")

    def rest_lag(self) -> None:
        self.exchange.rest_lag_s = self.plan.rest_lag_s
        self.note(f"REST history lags {self.plan.rest_lag_s:.0f} s behind the feed from now on")

    def empty_topic(self) -> None:
        from kafka import KafkaAdminClient, TopicPartition

        self.producer.stop()
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{self.ports.kafka}")
        try:
            # What retention does to a producer down for longer than it: nothing left to
            # resume from in the topic (-1: delete up to the high watermark).
            admin.delete_records({TopicPartition("trades", p): -1 for p in range(self.plan.partitions)})
        finally:
            admin.close()
        self._printed_for(self.plan.producer_down_s)
        self.note(f"producer down for {self.plan.producer_down_s:.0f} s of trades while every record of the topic "
                  "was deleted")
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
                    f"select symbol, trade_id, price, size, side, timestamp from trades "
                    f"where symbol in ('{SYMBOL}', '{QUIET}')")

    def audit(self) -> dict[str, float]:
        symbols = (SYMBOL, QUIET) if self.plan.quiet_every_s else (SYMBOL,)
        return {s: metric(self.ports.producer, "gostream_trades_missing", f'symbol="{s}"') for s in symbols}

    def verify(self, timeout_s: float = 240.0) -> Report:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if len(self.rows()) >= self.report.emitted and not any(self.audit().values()):
                    break
            except OSError:
                pass
            time.sleep(1)
        time.sleep(2)  # anything still arriving would be a duplicate: let it land
        rows = self.rows()
        expected = {(t["instId"], int(t["tradeId"])): t for t in self.tape}
        stored = {(r["symbol"], r["trade_id"]): r for r in rows}
        self.report.stored = len(rows)
        self.report.distinct = len(stored)
        self.report.missing = sorted(set(expected) - set(stored))
        self.report.unexpected = sorted(set(stored) - set(expected))
        for key in sorted(set(expected) & set(stored)):
            want, got = expected[key], stored[key]
            if (float(want["px"]), float(want["sz"]), want["side"]) != (got["price"], got["size"], got["side"]) \
                    or _ms(got["timestamp"]) != int(want["ts"]):
                self.report.mismatched.append(key)
        self.report.audit_missing = self.audit()
        ledger = _sql(self.ports.questdb_http, "select state, count() n from trade_holes")
        counts = {row["state"]: row["n"] for row in ledger}
        self.report.ledger_open, self.report.ledger_closed = counts.get("open", 0), counts.get("closed", 0)
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

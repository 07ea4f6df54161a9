"""What every benchmark shares: a stack of real processes on ports of its own, SQL,
process memory, percentiles, a sampling profiler.

Ports are the defaults + 8000 (Kafka 17092, QuestDB 17000/16812/17003, api 11000,
frontend 16080, producer 17101, consumer 17102), so `make up` and test sessions are left
alone, all below the kernel's ephemeral range (32768+); GOSTREAM_BENCH_PORT_OFFSET moves them.
Data lives in .cache/bench/ (git-ignored; GOSTREAM_BENCH_DIR moves it) and is wiped at the
start of every run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import time
import urllib.parse
import urllib.request
from contextlib import closing
from pathlib import Path

from stack import components as c
from stack.process import Process

PORT_OFFSET = int(os.environ.get("GOSTREAM_BENCH_PORT_OFFSET") or 8000)
PORTS = c.Ports().shifted(PORT_OFFSET)
WORK = Path(os.environ.get("GOSTREAM_BENCH_DIR") or c.ROOT / ".cache" / "bench")
RESULTS = c.ROOT / "bench" / "results"
PY_SPY = Path(c.PYTHON).with_name("py-spy")


class BenchError(RuntimeError):
    pass


class Stack:
    """Kafka and QuestDB once per run; services started on demand; all stopped at exit."""

    def __init__(self, work: Path = WORK) -> None:
        self.work = work
        self.logs = work / "logs"
        self.processes: list[Process] = []
        self.kafka: Process | None = None
        self.questdb: Process | None = None

    def __enter__(self) -> Stack:
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        c.ensure_jars()
        for port in (PORTS.kafka, PORTS.kafka_controller, PORTS.questdb_http, PORTS.questdb_pg, PORTS.questdb_health):
            if c.port_open(port):
                raise BenchError(f"port {port} is taken: an earlier bench still running? stop it and retry")
        self.kafka = self.start(c.kafka(self.work, PORTS), 120)
        self.questdb = self.start(c.questdb(self.work, PORTS), 120)
        return self

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as error:  # keep stopping the others
                print(f"stopping {process.spec.name}: {error}", flush=True)
        self.processes.clear()

    def start(self, spec: c.Spec, timeout_s: float = 60) -> Process:
        process = Process(spec, self.logs).start()
        self.processes.append(process)
        return process.wait_ready(timeout_s)

    def stop(self, process: Process) -> None:
        process.stop()
        if process in self.processes:
            self.processes.remove(process)

    def env(self, topic: str, group: str | None = None, **extra: str) -> dict[str, str]:
        return c.service_env(PORTS, KAFKA_TOPIC=topic, KAFKA_DLQ_TOPIC=f"{topic}.dlq",
                             KAFKA_GROUP_ID=group or f"{topic}-group", LOG_LEVEL="WARNING", **extra)

    def service(self, name: str, topic: str, group: str | None = None, **extra: str) -> Process:
        return self.start(getattr(c, name)(PORTS, self.env(topic, group, **extra)))

    def topic(self, name: str, partitions: int = 3) -> str:
        c.ensure_topics(PORTS.kafka, {name: partitions, f"{name}.dlq": 1})
        return name


# -- QuestDB ------------------------------------------------------------------
def sql(query: str, timeout_s: float = 60) -> list[dict]:
    url = f"http://127.0.0.1:{PORTS.questdb_http}/exec?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        body = json.load(response)
    if "columns" not in body:
        return []
    names = [col["name"] for col in body["columns"]]
    return [dict(zip(names, row)) for row in body["dataset"]]


def pg_connection():
    """A QuestDB connection over the PostgreSQL wire (autocommit), for fast repeated reads."""
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=PORTS.questdb_pg, user="admin", password="quest",
                                  dbname="qdb", connect_timeout=10)
    connection.autocommit = True
    return closing(connection)


def scalar(query: str, default=0):
    try:
        rows = sql(query)
    except OSError:
        return default
    if not rows:
        return default
    value = next(iter(rows[0].values()))
    return default if value is None else value


def wal_pending(table: str = "trades") -> bool:
    """True while QuestDB has WAL transactions not yet applied to ``table``."""
    rows = sql(f"select writerTxn, sequencerTxn from wal_tables() where name = '{table}'")
    return bool(rows) and rows[0]["writerTxn"] < rows[0]["sequencerTxn"]


# -- processes ------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [int(x) for x in out.split()]


def memory_mb(pid: int | None) -> dict:
    """Memory of ``pid`` and its children (gunicorn workers), in MB: ``rss`` counts pages the
    processes share once per process; ``pss`` (proportional set size, from smaps_rollup)
    splits each shared page among its sharers, so it sums to what the service really costs."""
    if pid is None:
        return {"rss": 0.0, "pss": 0.0}
    kb = {"Rss:": 0, "Pss:": 0}
    for p in [pid] + _children(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                key = line.split(None, 1)[0] if line else ""
                if key in kb:
                    kb[key] += int(line.split()[1])
        except OSError:
            pass
    return {"rss": round(kb["Rss:"] / 1024, 1), "pss": round(kb["Pss:"] / 1024, 1)}


def stat_cpu_seconds(stat: str) -> float:
    """User + system CPU seconds from a /proc ``stat`` file (a process's or a thread's);
    0 when it is gone or unreadable."""
    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of ``pid`` and its children so far."""
    if pid is None:
        return 0.0
    return sum(stat_cpu_seconds(f"/proc/{p}/stat") for p in [pid] + _children(pid))


class Profile:
    """py-spy record of one process for a while, summarised as the top functions by
    own time ("self") and by time on the stack ("total")."""

    def __init__(self, pid: int, name: str, duration_s: int, stamp: str) -> None:
        self.name = name
        self.raw = RESULTS / f"{stamp}-{name}.collapsed.tmp"
        self.popen = None
        if PY_SPY.exists():
            self.popen = subprocess.Popen(
                [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(duration_s), "--rate", "100",
                 "--format", "raw", "--output", str(self.raw), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def summary(self, top: int = 12) -> dict:
        if self.popen is None:
            return {"error": "py-spy not installed"}
        try:
            self.popen.wait(120)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return {"error": "py-spy did not finish"}
        if not self.raw.exists():
            return {"error": "py-spy wrote nothing"}
        own: dict[str, int] = {}
        total: dict[str, int] = {}
        samples = 0
        for line in self.raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            n = int(count)
            samples += n
            frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                      if " (" in f else f for f in stack.split(";")]
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for f in set(frames):
                total[f] = total.get(f, 0) + n
        pct = lambda d: [(k, round(100 * v / max(samples, 1), 1)) for k, v in  # noqa: E731
                         sorted(d.items(), key=lambda kv: -kv[1])[:top]]
        return {"samples": samples, "self_pct": pct(own), "total_pct": pct(total), "raw": str(self.raw.name)}


# -- numbers --------------------------------------------------------------------
def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def p(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"n": len(ordered), "p50": p(0.50), "p90": p(0.90), "p99": p(0.99), "max": round(ordered[-1], 1),
            "mean": round(statistics.fmean(ordered), 1)}


def machine() -> dict:
    load = os.getloadavg()
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_gb": round(mem_gb, 1), "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_at_start": [round(x, 2) for x in load]}


def now() -> float:
    return time.time()

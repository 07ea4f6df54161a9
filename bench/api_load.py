"""P4 API under load, and the api/frontend half of P6 footprint.

A 10M-trade table for one symbol over the last 24 h, written by QuestDB itself
(INSERT ... SELECT FROM long_sequence) into the real `trades` table, so the 1m
materialized view is refreshed as in production. Then wrk (Debian's) asks for the
1,440 1m bars of that day, and for /healthz (the no-op) under the same gunicorn config,
same connections, same duration.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

from bench.common import PORTS, Profile, Stack, rss_mb, scalar, sql, wal_pending
from gostream.consumer.schema import ensure_schema
from stack import components as c

SYMBOL = "P4-USDT"


def fill(rows: int) -> dict:
    ensure_schema(f"http://127.0.0.1:{PORTS.questdb_http}")
    end_s = int(time.time()) // 60 * 60
    start_us = (end_s - 86_400) * 1_000_000
    step_us = max(1, 86_400 * 1_000_000 // rows)
    started = time.perf_counter()
    sql(f"""INSERT INTO trades (symbol, side, trade_id, price, size, fills, received_at, timestamp)
            SELECT '{SYMBOL}', rnd_symbol('buy','sell'), x, 30000 + rnd_double() * 100, rnd_double() / 10, 1,
                   timestamp_sequence({start_us}, {step_us}), timestamp_sequence({start_us}, {step_us})
            FROM long_sequence({rows})""", timeout_s=600)
    inserted = time.perf_counter() - started
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        bars = int(scalar(f"select count() from candles_1m where symbol = '{SYMBOL}'"))
        if bars >= 1440 and not wal_pending("trades"):
            break
        time.sleep(1)
    return {"rows": int(scalar(f"select count() from trades where symbol = '{SYMBOL}'")),
            "insert_s": round(inserted, 1), "view_ready_s": round(time.perf_counter() - started, 1),
            "bars": bars, "from": end_s - 86_400, "to": end_s}


def wrk(url: str, connections: int, duration_s: int, threads: int = 2) -> dict:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "5s", url],
                         capture_output=True, text=True, check=True).stdout

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return round(float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit], 2)

    pct = {f"p{m.group(1)}": ms(m.group(2)) for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"req_per_s": round(rps), "latency_ms": pct, "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else None}


def run(stack: Stack, stamp: str, rows: int = 10_000_000, connections: int = 16, duration_s: int = 20) -> dict:
    if shutil.which("wrk") is None:
        return {"error": "wrk not installed: apt-get install -y wrk (make bench-deps)"}
    print(f"P4: filling {rows:,} trades (INSERT ... SELECT) ...", flush=True)
    filled = fill(rows)
    print(f"P4: filled {filled}", flush=True)
    env = c.service_env(PORTS, LOG_LEVEL="WARNING")
    api = stack.start(c.api(PORTS, env))
    frontend = stack.start(c.frontend(PORTS, env))
    time.sleep(3)
    result: dict = {"fill": filled, "idle_rss_mb": {"api": rss_mb(api.pid), "frontend": rss_mb(frontend.pid)}}
    base = f"http://127.0.0.1:{PORTS.api}"
    candles = f"{base}/candles?symbol={SYMBOL}&interval=1m&from={filled['from']}&to={filled['to']}&limit=1440"
    import urllib.request

    with urllib.request.urlopen(candles, timeout=30) as response:
        body = json.load(response)
    result["bars_returned"] = len(body)
    wrk(candles, connections, 3)  # warm-up: pools, caches
    result["noop"] = wrk(f"{base}/healthz", connections, duration_s)
    print(f"P4: /healthz {result['noop']}", flush=True)
    workers = [int(p) for p in subprocess.run(["ps", "-o", "pid=", "--ppid", str(api.pid)], capture_output=True,
                                               text=True).stdout.split()]
    profiles = [Profile(w, f"p4-api-worker{i}", max(5, duration_s // 2), stamp) for i, w in enumerate(workers[:1])]
    peak = [0.0]
    result["candles"] = wrk(candles, connections, duration_s)
    peak[0] = rss_mb(api.pid)
    result["candles"]["profile"] = {p.name: p.summary() for p in profiles}
    print(f"P4: /candles {result['candles']['req_per_s']} req/s {result['candles']['latency_ms']}", flush=True)
    result["load_rss_mb"] = {"api": peak[0]}
    result["ratio_vs_noop"] = round(result["candles"]["req_per_s"] / max(result["noop"]["req_per_s"], 1), 2)
    result["connections"] = connections
    result["gunicorn"] = "gostream.api.gunicorn_conf defaults (2 gthread workers x 32 threads)"
    return result

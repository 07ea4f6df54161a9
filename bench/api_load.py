"""P4 API under load, and the api/frontend half of P6 footprint.

A 10M-trade table for one symbol over the last 24 h, written by QuestDB itself
(INSERT ... SELECT FROM long_sequence) into the real `trades` table, so the 1m
materialized view is refreshed as in production. Then:

- one uncached /candles request at a time (each with a parameter set not asked before),
  split by the api's own metrics into QuestDB (query + rows fetched) and Python;
- wrk (Debian's) asks for the 1,440 1m bars of that day, and for /healthz (the no-op)
  under the same gunicorn config, same connections, same duration; the api's /candles
  cache counters are read before and after;
- the same /candles load against a second api with the cache off (CANDLES_CACHE_MS=0),
  to show what the cache saves;
- memory of the api and the frontend (gunicorn master + workers): RSS and PSS, idle and
  the peak under the /candles load;
- with GOSTREAM_P4_CONTRACT_TREES=name=dir,... (source trees of the api that differ only in
  how parameters are checked and the OpenAPI document made): the same /candles loads, cache
  on and off, and a 400 answer (validation alone, no QuestDB), against an api run from each
  tree in turn, in rounds, so the ways compare side by side in one run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

from bench.common import PORTS, Profile, Stack, cpu_seconds, memory_mb, percentiles, scalar, sql, wal_pending
from gostream.common.schema import ensure_schema
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
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"req_per_s": round(rps), "requests": requests, "latency_ms": pct,
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else None}


def api_metrics(port: int) -> dict[str, float]:
    """The api's gostream_api_* samples, by name with labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("gostream_api_"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _delta(before: dict, after: dict, name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def single_uncached(port: int, url_for, n: int = 30) -> dict:
    """``n`` /candles requests one at a time, each a new cache key (``url_for(i)``): client
    time, and from the api's metrics the server time and QuestDB's part of it."""
    candles_sum = 'gostream_api_request_duration_seconds_sum{endpoint="/candles"}'
    candles_n = 'gostream_api_request_duration_seconds_count{endpoint="/candles"}'
    db_sum, db_n = "gostream_api_db_query_duration_seconds_sum", "gostream_api_db_query_duration_seconds_count"
    misses = 'gostream_api_candles_cache_requests_total{result="miss"}'
    before = api_metrics(port)
    client = []
    for i in range(n):
        started = time.perf_counter()
        with urllib.request.urlopen(url_for(i), timeout=30) as response:
            response.read()
        client.append((time.perf_counter() - started) * 1000)
    after = api_metrics(port)
    requests = _delta(before, after, candles_n)
    server_ms = _delta(before, after, candles_sum) / max(requests, 1) * 1000
    db_ms = _delta(before, after, db_sum) / max(requests, 1) * 1000
    return {"n": n, "cache_misses": int(_delta(before, after, misses)),
            "queries_per_request": round(_delta(before, after, db_n) / max(requests, 1), 2),
            "client_ms": percentiles(client), "server_ms_mean": round(server_ms, 2),
            "questdb_ms_mean": round(db_ms, 2), "python_ms_mean": round(server_ms - db_ms, 2)}


def contract_trees(text: str) -> dict[str, str]:
    """``name=dir,name=dir``: api source trees (each a directory holding the gostream package)."""
    trees = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, path = part.partition("=")
        if not os.path.isdir(os.path.join(path, "gostream", "api")):
            raise ValueError(f"GOSTREAM_P4_CONTRACT_TREES: {path!r} holds no gostream/api")
        trees[name] = path
    return trees


def _costed(pid: int, url: str, connections: int, duration_s: int) -> dict:
    """wrk, and the api's CPU per request over it (user + system of master and workers):
    on a shared machine, CPU per request drifts far less than req/s and latency."""
    before = cpu_seconds(pid)
    result = wrk(url, connections, duration_s)
    result["api_cpu_us_per_request"] = round((cpu_seconds(pid) - before) / max(result["requests"], 1) * 1e6)
    return result


def contract_cost(stack: Stack, trees: dict[str, str], env: dict, query: str, connections: int, duration_s: int,
                  rounds: int = 3) -> dict:
    """P4's /candles load, cache on (the raw fast path, which checks the query with the same
    model) and off (every request through the Flask route and its validation), and a bad
    request (`limit=0`: 400 from the route's validation, no QuestDB), against an api run from
    each tree; the trees take turns, ``rounds`` times, so drift hits them alike. Each tree's
    in-process cost (``wsgi_cost``) is measured first, in a process of its own."""
    ports = dataclasses.replace(PORTS, api=PORTS.api + 2)
    base = f"http://127.0.0.1:{ports.api}"
    out: dict = {name: {"rounds": []} for name in trees}
    for round_ in range(rounds):
        for name, tree in trees.items():
            tree_env = {**env, "PYTHONPATH": os.path.abspath(tree)}
            got: dict = {"wsgi": json.loads(subprocess.run(
                [sys.executable, "-c", "import json, bench.api_load as b; print(json.dumps(b.wsgi_cost()))"],
                env={**os.environ, **tree_env, "PYTHONPATH": f"{os.path.abspath(tree)}{os.pathsep}{c.ROOT}"},
                capture_output=True, text=True, check=True, cwd=c.ROOT).stdout)}
            api = stack.start(dataclasses.replace(c.api(ports, tree_env), name=f"api-{name}"))
            try:
                got["idle_mb"] = memory_mb(api.pid)
                wrk(f"{base}/candles?{query}&limit=1440", connections, 3)
                got["candles"] = _costed(api.pid, f"{base}/candles?{query}&limit=1440", connections, duration_s)
                got["bad_request"] = _costed(api.pid, f"{base}/candles?{query}&limit=0", connections, duration_s)
            finally:
                stack.stop(api)
            api = stack.start(dataclasses.replace(c.api(ports, {**tree_env, "CANDLES_CACHE_MS": "0"}),
                                                  name=f"api-{name}-uncached"))
            try:
                wrk(f"{base}/candles?{query}&limit=1440", connections, 3)
                got["candles_cache_off"] = _costed(api.pid, f"{base}/candles?{query}&limit=1440", connections,
                                                   duration_s)
            finally:
                stack.stop(api)
            print(f"P4 contract {name} round {round_ + 1}: " + "; ".join(
                f"{k} {got[k]['req_per_s']} req/s p99 {got[k]['latency_ms'].get('p99')} ms "
                f"{got[k]['api_cpu_us_per_request']} µs CPU/request" for k in ("candles", "candles_cache_off", "bad_request"))
                + f"; in-process {got['wsgi']}", flush=True)
            out[name]["rounds"].append(got)
    return out


def wsgi_cost(n: int = 5000) -> dict:
    """In this process, without a server or QuestDB (the candles' body stubbed): CPU µs per
    request through the api's WSGI app (the gostream found first on PYTHONPATH) for a valid
    /candles on the raw fast path (cache hit) and through the route (cache off), a bad one
    (400: the check and the framework around it), a repeated parameter, an unknown path."""
    from werkzeug.test import EnvironBuilder

    from gostream.api import market
    from gostream.api.app import create_app

    os.environ["QUESTDB_PG_PORT"] = "1"  # never connected to: the candles are stubbed
    market.candles_json = lambda *args: b"[]"
    app = create_app()
    os.environ["CANDLES_CACHE_MS"] = "0"
    uncached = create_app()
    valid = "symbol=BTC-USDT&interval=1m&from=1796115000&to=1796201400&limit=1440"
    out = {}
    for name, wsgi, path, query in (("candles_fast_path", app, "/candles", valid),
                                    ("candles_route", uncached, "/candles", valid),
                                    ("bad_candles", app, "/candles", "symbol=BTC-USDT&interval=1m&from=1&to=2&limit=0"),
                                    ("repeated", app, "/candles", "symbol=BTC-USDT&symbol=ETH-USDT"),
                                    ("not_found", app, "/nope", "")):
        environ = EnvironBuilder(path=path, query_string=query).get_environ()
        status = []

        def start_response(line, headers, exc_info=None):
            status.append(line)

        for _ in range(500):  # warm-up
            b"".join(wsgi(dict(environ), start_response))
        started = time.process_time()
        for _ in range(n):
            b"".join(wsgi(dict(environ), start_response))
        out[name] = {"cpu_us_per_request": round((time.process_time() - started) / n * 1e6, 1), "status": status[-1]}
    return out


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
    result: dict = {"fill": filled, "idle_mb": {"api": memory_mb(api.pid), "frontend": memory_mb(frontend.pid)}}
    print(f"P4: idle memory {result['idle_mb']}", flush=True)
    base = f"http://127.0.0.1:{PORTS.api}"
    query = f"symbol={SYMBOL}&interval=1m&from={filled['from']}&to={filled['to']}"
    candles = f"{base}/candles?{query}&limit=1440"
    with urllib.request.urlopen(candles, timeout=30) as response:
        body = json.load(response)
    result["bars_returned"] = len(body)
    # limit 1441.. on a day of 1,440 bars: the same body, a new cache key each time.
    result["single_uncached"] = single_uncached(PORTS.api, lambda i: f"{base}/candles?{query}&limit={1441 + i}")
    print(f"P4: one uncached /candles at a time {result['single_uncached']}", flush=True)
    wrk(candles, connections, 3)  # warm-up: pools, caches
    result["noop"] = wrk(f"{base}/healthz", connections, duration_s)
    print(f"P4: /healthz {result['noop']}", flush=True)
    workers = [int(p) for p in subprocess.run(["ps", "-o", "pid=", "--ppid", str(api.pid)], capture_output=True,
                                               text=True).stdout.split()]
    profiles = [Profile(w, f"p4-api-worker{i}", max(5, duration_s // 2), stamp) for i, w in enumerate(workers[:1])]
    peak = {"rss": 0.0, "pss": 0.0}
    loaded = threading.Event()

    def sample() -> None:
        while not loaded.wait(0.5):
            now = memory_mb(api.pid)
            for key in peak:
                peak[key] = max(peak[key], now[key])

    sampler = threading.Thread(target=sample, daemon=True)
    before = api_metrics(PORTS.api)
    sampler.start()
    result["candles"] = wrk(candles, connections, duration_s)
    loaded.set()
    sampler.join()
    after = api_metrics(PORTS.api)
    result["candles"]["cache"] = {
        r: int(_delta(before, after, f'gostream_api_candles_cache_requests_total{{result="{r}"}}'))
        for r in ("hit", "miss", "shared")}
    result["candles"]["cache"]["refreshes"] = int(_delta(before, after, "gostream_api_candles_cache_refreshes_total"))
    result["candles"]["cache"]["questdb_queries"] = int(_delta(before, after, "gostream_api_db_query_duration_seconds_count"))
    result["candles"]["profile"] = {p.name: p.summary() for p in profiles}
    print(f"P4: /candles {result['candles']['req_per_s']} req/s {result['candles']['latency_ms']} "
          f"cache {result['candles']['cache']}", flush=True)
    result["load_mb"] = {"api": peak}
    result["ratio_vs_noop"] = round(result["candles"]["req_per_s"] / max(result["noop"]["req_per_s"], 1), 2)

    # The same load with the cache off, on a second api beside the first (P5 uses the first).
    ports = dataclasses.replace(PORTS, api=PORTS.api + 1)
    uncached_api = stack.start(c.api(ports, {**env, "CANDLES_CACHE_MS": "0"}))
    try:
        uncached = f"http://127.0.0.1:{ports.api}/candles?{query}&limit=1440"
        wrk(uncached, connections, 3)
        result["candles_cache_off"] = wrk(uncached, connections, max(5, duration_s // 2))
        print(f"P4: /candles with CANDLES_CACHE_MS=0 {result['candles_cache_off']}", flush=True)
    finally:
        stack.stop(uncached_api)
    trees = contract_trees(os.environ.get("GOSTREAM_P4_CONTRACT_TREES", ""))
    if trees:
        result["contract"] = contract_cost(stack, trees, env, query, connections, max(5, duration_s // 2))
    result["connections"] = connections
    result["gunicorn"] = {"WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "1 (default)"),
                          "GUNICORN_THREADS": os.environ.get("GUNICORN_THREADS", "64 (default)"),
                          "CANDLES_CACHE_MS": os.environ.get("CANDLES_CACHE_MS", "1000 (default)")}
    return result

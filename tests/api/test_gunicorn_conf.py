"""The api under gunicorn with more than one worker: the app preloaded in the master and
forked, metrics summed over the workers, each worker with its own pool and cache."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from stack import components as c
from stack.process import Process
from tests.api.pipeline import insert_trade
from tests.conftest import TEST_PORTS, metric, spare_port, unique, wait_for

MINUTE = 1_704_171_600  # 2024-01-02 05:00:00 UTC


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_two_preloaded_workers(api, stack_dir):
    symbol = unique("TWO") + "-USDT"
    insert_trade(symbol, 1, 100.0, 0.5, MINUTE + 5)
    port = spare_port()
    ports = c.Ports(api=port, questdb_pg=TEST_PORTS.questdb_pg, questdb_http=TEST_PORTS.questdb_http)
    spec = c.api(ports, c.service_env(ports, LOG_LEVEL="INFO", WEB_CONCURRENCY="2"))
    process = Process(spec, stack_dir / "logs" / "api-two-workers").start().wait_ready(60)
    try:
        workers = wait_for(lambda: _children(process.pid) if len(_children(process.pid)) == 2 else None, 30,
                           message="two workers")
        # Preloaded: the master imported the app (Flask is in its memory map), and the
        # workers are forks of it rather than fresh interpreters importing it again.
        master_maps = Path(f"/proc/{process.pid}/maps").read_text()
        assert "psycopg2" in master_maps
        # Each worker writes its metric samples to a file of its own from the fork on (the
        # metrics were made in the master), not only after it first changed one.
        for worker in workers:
            wait_for(lambda: f"_{worker}.db" in Path(f"/proc/{worker}/maps").read_text(), 10,
                     message=f"worker {worker} writing its own metrics file")

        path = f"/candles?symbol={symbol}&from={MINUTE}&to={MINUTE + 600}&limit=10"
        bodies = set()
        for _ in range(40):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
                assert response.status == 200
                bodies.add(response.read())
        assert len(bodies) == 1 and [c["close"] for c in json.loads(bodies.pop())] == [100.0]
        # Every worker's samples in one /metrics, whichever worker serves it.
        assert metric(port, "gostream_api_requests_total", 'endpoint="/candles",status="200"') == 40
        results = {r: metric(port, "gostream_api_candles_cache_requests_total", f'result="{r}"')
                   for r in ("hit", "miss", "shared")}
        assert sum(results.values()) == 40
        assert 1 <= results["miss"] <= 2  # one query per worker at most: each has its own cache
        assert "Traceback" not in process.tail(200)
    finally:
        process.stop()

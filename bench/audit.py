"""P9: the completeness audit (gostream.producer.audit) over a big store.

N trades of one symbol with a hole every 100,000 ids are written straight into QuestDB
(one INSERT ... SELECT), then:
- one full audit pass, as at producer start-up (no window yet): seconds, and the CPU it
  cost QuestDB and the auditing process, with the holes it found checked against those
  written;
- steady state: passes over a store that grows by live trades between passes (the
  incremental window), with their mean seconds and CPU, and what that costs per minute
  at the default AUDIT_INTERVAL_S.
The audit runs in this process, as it runs in the producer (a thread making /exec
queries); REST fills are captured, not sent.
"""

from __future__ import annotations

import logging
import os
import resource
import time

from bench.common import PORTS, cpu_seconds, scalar, sql, wal_pending
from gostream.common.schema import ensure_schema
from gostream.producer.audit import Auditor, Policy, Store
from gostream.producer.settings import ProducerSettings

SYMBOL = "AUDIT-USDT"
HOLE_EVERY = 100_000
STEP_US = 10_000  # 100 trades/s of exchange time


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _write(first_id: int, n: int, start_us: int) -> None:
    sql(f"""INSERT INTO trades (symbol, side, trade_id, price, size, fills, received_at, timestamp)
            SELECT '{SYMBOL}', rnd_symbol('buy','sell'), {first_id - 1} + x, 30000 + rnd_double() * 100,
                   rnd_double() / 10, 1, timestamp_sequence({start_us}, {STEP_US}),
                   timestamp_sequence({start_us}, {STEP_US})
            FROM long_sequence({n}) WHERE ({first_id - 1} + x) % {HOLE_EVERY} != 0""", timeout_s=900)
    deadline = time.monotonic() + 600
    while wal_pending("trades") and time.monotonic() < deadline:
        time.sleep(0.5)


def run(stack, n: int, passes: int = 10) -> dict:
    base = f"http://127.0.0.1:{PORTS.questdb_http}"
    ensure_schema(base)
    start_us = (int(time.time()) - n * STEP_US // 1_000_000 - 3600) * 1_000_000
    started = time.perf_counter()
    _write(1, n, start_us)
    rows = int(scalar(f"select count() from trades where symbol = '{SYMBOL}'"))
    written_s = time.perf_counter() - started
    expected_holes = (n - 1) // HOLE_EVERY  # the ids skipped below the newest one
    logging.getLogger("gostream.producer.audit").setLevel(logging.ERROR)  # a line per hole otherwise

    fills = []
    auditor = Auditor(Store(base), (SYMBOL,), Policy(settle_s=0), submit=fills.append, pending=lambda *a: False)
    qdb = stack.questdb.pid
    q0, p0, t0 = cpu_seconds(qdb), _self_cpu(), time.perf_counter()
    auditor.audit()
    first = {"seconds": round(time.perf_counter() - t0, 2), "questdb_cpu_s": round(cpu_seconds(qdb) - q0, 2),
             "auditor_cpu_s": round(_self_cpu() - p0, 2), "holes_found": len(auditor.ledger.active(SYMBOL)),
             "holes_written": expected_holes}

    # Steady state: each pass sees what arrived since the last one (a minute of trades at
    # 100/s, one more hole every 10 passes), as the periodic audit does.
    next_id, next_us = n + 1, start_us + n * STEP_US
    per_pass = 6000
    seconds, questdb_cpu, auditor_cpu = [], [], []
    for _ in range(passes):
        _write(next_id, per_pass, next_us)
        next_id, next_us = next_id + per_pass, next_us + per_pass * STEP_US
        q0, p0, t0 = cpu_seconds(qdb), _self_cpu(), time.perf_counter()
        auditor.audit()
        seconds.append(time.perf_counter() - t0)
        questdb_cpu.append(cpu_seconds(qdb) - q0)
        auditor_cpu.append(_self_cpu() - p0)
    interval = ProducerSettings.audit_interval_s
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    steady = {"passes": passes, "new_trades_per_pass": per_pass, "mean_seconds": round(mean(seconds), 3),
              "mean_questdb_cpu_s": round(mean(questdb_cpu), 3), "mean_auditor_cpu_s": round(mean(auditor_cpu), 3),
              "interval_s": interval,
              "cpu_pct_of_one_core_at_interval": round(100 * (mean(questdb_cpu) + mean(auditor_cpu)) / interval, 2),
              "open_holes": len(auditor.ledger.active(SYMBOL))}
    return {"n": n, "rows": rows, "write_s": round(written_s, 1), "first_pass": first, "steady": steady,
            "pid": os.getpid()}

"""python -m tests.chaos (`make chaos`): the long form of the chaos test, with a report."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from tests.chaos.harness import Chaos, Plan


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    parser.add_argument("--duration", type=float, default=600, help="seconds of trading (default 600)")
    parser.add_argument("--rate", type=float, default=200, help="trades per second (default 200)")
    parser.add_argument("--questdb-down", type=float, default=60, help="seconds QuestDB stays stopped")
    parser.add_argument("--workdir", type=Path, default=None, help="where data and logs go (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # the exchange's per-request lines
    logging.getLogger("kafka").setLevel(logging.WARNING)

    d = args.duration
    # Every fault of both short runs (tests/chaos/test_chaos.py), spread over one long run.
    plan = Plan(
        duration_s=d,
        rate=args.rate,
        consumer_kills_at=tuple(d * f for f in (0.1, 0.35, 0.6, 0.85)),
        kafka_restart_at=d * 0.2,
        producer_kill_at=d * 0.3,
        questdb_stop_at=d * 0.45,
        questdb_down_s=args.questdb_down,
        partitions=1,
        quiet_every_s=3.0,
        rest_down_at=d * 0.05,
        rest_down_s=min(60.0, d * 0.1),
        producer_term_at=d * 0.08,
        producer_kills_at=(d * 0.52,),
        rest_429_from=d * 0.65,
        rest_lag_from=d * 0.7,
        topic_emptied_at=d * 0.9,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gostream-chaos-"))
    print(f"chaos: {d:.0f} s at {args.rate:.0f} trades/s; data and logs in {workdir}", flush=True)
    report = Chaos(workdir, plan).execute()
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

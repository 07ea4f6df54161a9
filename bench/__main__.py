"""python -m bench: run the benchmarks, print the numbers, write bench/results/<stamp>.json
and the table in BENCHMARKS.md.

    python -m bench                       # everything, N=2,000,000 for P1
    python -m bench --n 200000 --only p1  # a quick P1
    python -m bench --rates 2000,5000 --duration 30
    GOSTREAM_QUESTDB_CONNECTOR_DIR=<jars> python -m bench --only p1   # with the official connector
    python -m bench --only p10                                         # bytes per trade on disk
    python -m bench --only p2cf --rates 2000,5000 --duration 30        # cryptofeed beside our producer
    GOSTREAM_BENCH_BASELINE=/tmp/wt-before/src python -m bench --only cpu  # CPU per trade, before -> after

Benchmarks measure; nothing here asserts a timing. Numbers on a shared 2-core machine
drift run to run: compare the figures of one run with each other.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback

from bench import report
from bench.common import RESULTS, Stack, machine

ALL = ("p1", "cpu", "p2", "p2cf", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10")


def images() -> dict:
    try:
        out = subprocess.run(["podman", "image", "ls", "--format", "json"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"podman: {exc}"}
    if out.returncode != 0:
        return {"error": out.stderr.strip()[:300]}
    sizes = {}
    for image in json.loads(out.stdout or "[]"):
        for name in image.get("Names") or []:
            repo, _, tag = name.rpartition(":")
            if repo.startswith("localhost/gostream-") and not repo.endswith("-base") and tag in ("dev", "test"):
                sizes[f"{repo.removeprefix('localhost/')}:{tag}"] = round(image["Size"] / 1e6)
    return sizes or {"error": "no localhost/gostream-*:dev or :test image: run `make images`"}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--n", type=int, default=2_000_000, help="P1: trades pre-filled on the topic")
    parser.add_argument("--rates", default="2000,5000,10000,20000,50000", help="P2: steps, trades/s")
    parser.add_argument("--duration", type=float, default=60, help="P2: seconds per step")
    parser.add_argument("--per-push", type=int, default=1,
                        help="P2: trades per WebSocket push (1: OKX trades-all, one trade per push)")
    parser.add_argument("--cpu-duration", type=float, default=30,
                        help="CPU per trade: seconds at each of 1,000 and 10,000 trades/s")
    parser.add_argument("--p4-rows", type=int, default=10_000_000, help="P4: trades in the table")
    parser.add_argument("--p9-rows", type=int, default=10_000_000, help="P9: trades the audit passes over")
    parser.add_argument("--p10-per-day", type=int, default=1_000_000,
                        help="P10: trades of one symbol a day, written for 3 days, for the bytes per trade")
    parser.add_argument("--only", default=",".join(ALL), help="comma list of " + ",".join(ALL))
    args = parser.parse_args()
    only = {x.strip().lower() for x in args.only.split(",") if x.strip()}

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict = {"stamp": stamp, "command": " ".join(["python -m bench", *sys.argv[1:]]), "machine": machine(),
                     "params": vars(args), "benchmarks": {}}
    out = RESULTS / f"{stamp}.json"

    def save() -> None:
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")

    def attempt(name: str, fn) -> None:
        started = time.monotonic()
        try:
            results["benchmarks"][name] = fn()
        except Exception as exc:
            traceback.print_exc()
            results["benchmarks"][name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        results["benchmarks"][name]["wall_s"] = round(time.monotonic() - started, 1)
        save()

    with Stack() as stack:
        if "p1" in only:
            from bench import p1_ingest

            attempt("p1", lambda: p1_ingest.run(stack, args.n, stamp))
        if only & {"cpu", "p2", "p3", "p6"}:
            from bench import pipeline

            rates = [int(r) for r in args.rates.split(",") if r.strip()] if "p2" in only else []
            parts = frozenset({"cpu"} & only) | (frozenset({"p3"}) if only & {"p2", "p3", "p6"} else frozenset())
            attempt("pipeline", lambda: pipeline.run(stack, stamp, rates, args.duration, args.per_push,
                                                     cpu_duration_s=args.cpu_duration, parts=parts))
        if "p2cf" in only:
            from bench import p2_cryptofeed

            cf_rates = [int(r) for r in args.rates.split(",") if r.strip()]
            attempt("p2_cryptofeed", lambda: p2_cryptofeed.run(stack, cf_rates, args.duration, args.per_push))
        if only & {"p4", "p5", "p6"}:
            from bench import api_load

            attempt("p4", lambda: api_load.run(stack, stamp, args.p4_rows))
        if "p5" in only:
            from bench import browser

            attempt("p5", lambda: browser.run(stack))
        if "p7" in only:
            from bench import p7_streams

            attempt("p7", lambda: p7_streams.run(stack))
        if "p8" in only:
            from bench import p8_instruments

            attempt("p8", lambda: p8_instruments.run(stack))
        if "p9" in only:
            from bench import audit

            attempt("p9", lambda: audit.run(stack, args.p9_rows))
        if "p10" in only:
            from bench import storage

            attempt("p10", lambda: storage.run(args.p10_per_day))
    if "p6" in only:
        results["benchmarks"]["images_mb"] = images()
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()
    print(f"results: {out}", flush=True)
    report.update(results)
    print(report.table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

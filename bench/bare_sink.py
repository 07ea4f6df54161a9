"""The anchor for P1 and P3: the least a Python Kafka -> QuestDB loop can do with the same
two libraries (kafka-python, questdb ILP/HTTP): poll, json.loads, row, flush, commit. No
validation, no dead letters, no metrics. What our consumer costs above this is overhead
we chose; what this costs is the libraries' floor.

python -m bench.bare_sink --bootstrap 127.0.0.1:17092 --topic p1 --questdb 127.0.0.1:17000 --table trades_bare --n 2000000

With --latency (P3) it runs until SIGTERM, reads the producer's records of either version
from the latest offset, writes each poll's rows at once in one transaction and commits
without waiting: the shortest path from Kafka to a visible row these clients allow.
"""

from __future__ import annotations

import argparse
import json
import signal
import time

from kafka import KafkaConsumer
from questdb import Sender, TimestampMicros, TimestampNanos


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--questdb", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--latency", action="store_true", help="P3: flush every poll, until SIGTERM")
    args = parser.parse_args()
    if args.latency:
        return latency_loop(args)

    consumer = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, group_id=f"{args.table}-bare",
                             enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=args.batch)
    sender = Sender.from_conf(f"http::addr={args.questdb};auto_flush=off;")
    sender.establish()
    buf = sender.new_buffer()
    done = pending = 0
    started = None
    loads = json.loads
    while done < args.n:
        batch = consumer.poll(timeout_ms=200, max_records=args.batch)
        for records in batch.values():
            if started is None:
                started = time.perf_counter()
            for record in records:
                o = loads(record.value)
                buf.row(args.table, symbols={"symbol": o["symbol"], "side": o["side"]},
                        columns={"trade_id": o["trade_id"], "price": o["price"], "size": o["size"], "fills": o["count"],
                                 "received_at": TimestampMicros(o["received"])},
                        at=TimestampNanos(o["ts"] * 1_000_000))
                pending += 1
        if pending >= args.batch or (pending and not batch):
            sender.flush(buf, transactional=True)
            consumer.commit()
            done += pending
            pending = 0
    print(json.dumps({"rows": done, "seconds": time.perf_counter() - (started or time.perf_counter())}), flush=True)
    sender.close()
    consumer.close(autocommit=False)


def latency_loop(args) -> None:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    consumer = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, group_id=f"{args.table}-bare-latency",
                             enable_auto_commit=False, auto_offset_reset="latest", fetch_max_wait_ms=50)
    sender = Sender.from_conf(f"http::addr={args.questdb};auto_flush=off;")
    sender.establish()
    buf = sender.new_buffer()
    loads = json.loads
    while not consumer.assignment():  # joined, with the partitions' latest offsets resolved:
        consumer.poll(timeout_ms=100)  # nothing sent from here on is missed
    for tp in consumer.assignment():
        consumer.position(tp)
    print(json.dumps({"ready": True}), flush=True)
    while not stopping:
        batch = consumer.poll(timeout_ms=200)
        for records in batch.values():
            for record in records:
                o = loads(record.value)
                for t in o["trades"] if o["v"] == 2 else (o,):
                    buf.row(args.table, symbols={"symbol": o["symbol"], "side": t["side"]},
                            columns={"trade_id": t["trade_id"], "price": t["price"], "size": t["size"],
                                     "fills": t["count"], "received_at": TimestampMicros(t["received"])},
                            at=TimestampNanos(t["ts"] * 1_000_000))
        if len(buf):
            sender.flush(buf, transactional=True)
            consumer.commit_async()
    sender.close()
    consumer.close(autocommit=False)


if __name__ == "__main__":
    main()

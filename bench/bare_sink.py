"""The anchor for P1: the least a Python Kafka -> QuestDB loop can do with the same two
libraries (kafka-python, questdb ILP/HTTP): poll, json.loads, row, flush, commit. No
validation, no dead letters, no metrics. What our consumer costs above this is overhead
we chose; what this costs is the libraries' floor.

python -m bench.bare_sink --bootstrap 127.0.0.1:17092 --topic p1 --questdb 127.0.0.1:17000 --table trades_bare --n 2000000
"""

from __future__ import annotations

import argparse
import json
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
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()

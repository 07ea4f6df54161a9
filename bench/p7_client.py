"""P7's load generator: N live terminals as N Server-Sent Events connections in one
asyncio process (a connection is a socket and a few hundred bytes here).

``python -m bench.p7_client PORT PATH N``: opens N streams (loopback only), prints
``{"connected": n, "refused": n}`` once every answer is in, then reads until stdin closes
and prints what it got: per stream the trades received, and the delivery latency of every
trade to every stream (arrival minus the trade's exchange time). Every stream receives the
same bytes, so each event block is parsed once and its arrivals are kept as times only."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import numpy as np


class Shared:
    def __init__(self) -> None:
        self.blocks: dict[bytes, list[int]] = {}  # trades event block -> exchange times (ms)
        self.arrivals: dict[bytes, list[float]] = {}  # block -> arrival times (ms), one per stream


class Stream(asyncio.Protocol):
    def __init__(self, shared: Shared, path: str, answered: asyncio.Future) -> None:
        self.shared, self.path, self.answered = shared, path, answered
        self.buffer = b""
        self.head = True
        self.trades = 0
        self.transport = None
        self.status = "none"  # the HTTP status line's code, "none" before an answer

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        now = time.time() * 1000
        self.buffer += data
        if self.head:
            if b"\r\n\r\n" not in self.buffer:
                return
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.head = False
            self.status = head[9:12].decode(errors="replace")
            if not self.answered.done():
                self.answered.set_result(head.startswith(b"HTTP/1.1 200"))
        # Chunked transfer encoding frames the events; a trades block is found by its text.
        while True:
            start = self.buffer.find(b"event: trades\ndata: ")
            if start < 0:
                self.buffer = self.buffer[-64:]
                return
            end = self.buffer.find(b"\n", start + 20)
            if end < 0:
                self.buffer = self.buffer[start:]
                return
            block = self.buffer[start + 20:end]
            self.buffer = self.buffer[end:]
            times = self.shared.blocks.get(block)
            if times is None:
                times = self.shared.blocks[block] = [t["time_ms"] for t in json.loads(block)]
                self.shared.arrivals[block] = []
            self.shared.arrivals[block].append(now)
            self.trades += len(times)

    def connection_lost(self, exc) -> None:
        if not self.answered.done():
            self.answered.set_result(False)


async def main(port: int, path: str, n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 100)), hard))
    loop = asyncio.get_running_loop()
    shared = Shared()
    streams: list[Stream] = []
    answers = []
    errors: dict[str, int] = {}
    for i in range(n):
        answered = loop.create_future()
        stream = Stream(shared, path, answered)
        try:
            # Source addresses spread over 127.0.0.2-9: one (address, port) pair has ~28k
            # ephemeral ports, and earlier steps' connections still hold theirs (TIME_WAIT).
            await loop.create_connection(lambda s=stream: s, "127.0.0.1", port, local_addr=(f"127.0.0.{2 + i % 8}", 0))
        except OSError as exc:
            errors[exc.strerror or type(exc).__name__] = errors.get(exc.strerror or type(exc).__name__, 0) + 1
            answered.set_result(False)
        streams.append(stream)
        answers.append(answered)
        if i % 200 == 199:
            await asyncio.sleep(0)  # let answers in while connecting
    await asyncio.wait(answers, timeout=120)
    results = [a.done() and not a.cancelled() and a.result() for a in answers]
    statuses: dict[str, int] = {}
    for stream in streams:
        statuses[stream.status] = statuses.get(stream.status, 0) + 1
    print(json.dumps({"connected": sum(results), "refused": n - sum(results), "connect_errors": errors,
                      "answers": statuses}), flush=True)
    shared.blocks.clear()
    shared.arrivals.clear()
    for stream in streams:
        stream.trades = 0
    used = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime) / (time.monotonic() - started)
    latencies = [np.asarray(shared.arrivals[b], dtype=np.float64)[:, None] - np.asarray(t, dtype=np.float64)[None, :]
                 for b, t in shared.blocks.items() if shared.arrivals[b]]
    flat = np.concatenate([x.ravel() for x in latencies]) if latencies else np.zeros(0)
    counts = [s.trades for s in streams if s.transport is not None and not s.head]
    out = {"streams_reading": len(counts), "trades_min": min(counts, default=0), "trades_max": max(counts, default=0),
           "deliveries": int(flat.size),
           "latency_ms": {f"p{q}": round(float(np.percentile(flat, q)), 1) for q in (50, 90, 99)} if flat.size else {},
           "latency_max_ms": round(float(flat.max()), 1) if flat.size else None,
           "client_cpu_pct": round(cpu * 100)}
    print(json.dumps(out), flush=True)
    for stream in streams:
        if stream.transport:
            stream.transport.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))

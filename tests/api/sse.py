"""A minimal Server-Sent Events reader over http.client, with event ids."""

from __future__ import annotations

import http.client
import json
import time

import pytest


class SSE:
    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream", **(headers or {})})
        self.response = self.conn.getresponse()
        self.comments: list[str] = []
        self.last_id: str | None = None  # as a browser keeps it: the latest `id:` field seen

    def events(self):
        name, data = "message", []
        while True:
            line = self.response.fp.readline()
            if not line:
                return
            line = line.decode().rstrip("\r\n")
            if line == "":
                if data:
                    yield name, json.loads("\n".join(data))
                name, data = "message", []
            elif line.startswith(":"):
                self.comments.append(line)
                yield "comment", line
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line.startswith("id:"):
                self.last_id = line[3:].strip()

    def until(self, predicate, timeout_s: float = 30.0) -> list[tuple[str, object]]:
        seen = []
        deadline = time.monotonic() + timeout_s
        for event in self.events():
            seen.append(event)
            if predicate(event, seen):
                return seen
            if time.monotonic() > deadline:
                break
        pytest.fail(f"stream ended or timed out; events: {seen[-10:]!r}"[:2000])

    def close(self) -> None:
        self.conn.close()


def trade_ids(events) -> list[int]:
    return [t["id"] for name, batch in events if name == "trades" for t in batch]

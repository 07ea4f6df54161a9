"""A local OKX v5 exchange that speaks the real protocol and misbehaves on request.

One port serves both sides:
- WebSocket ``/ws/v5/business`` (channel ``trades-all``) and ``/ws/v5/public``
  (channel ``trades``, fills aggregated with ``count``): subscribe / ack / push,
  text ``ping`` -> ``pong``, error events for unknown symbols, the 64008 notice,
  and a close with code 4004 after ``idle_timeout_s`` without traffic either way (OKX:
  "data has not been pushed for more than 30 seconds"; a client's ping counts too);
- REST ``GET /api/v5/market/history-trades?instId=&after=&limit=`` (newest first,
  ids strictly below ``after``), rate limited to 20 requests per 2 s like OKX.

Like OKX, a new subscription first gets the latest trade already printed.
Everything emitted is kept on a tape, so trades pushed while a client was away can
be fetched over REST. Control methods are thread-safe (the server runs its own loop).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
from collections import defaultdict, deque
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.okxsim.trades import aggregate

CHANNEL_BY_PATH = {"/ws/v5/business": "trades-all", "/ws/v5/public": "trades"}


@dataclass(eq=False)  # identity hashing: clients live in a set
class Client:
    ws: ServerConnection
    channel: str
    symbols: set[str] = field(default_factory=set)
    last_traffic: float = field(default_factory=time.monotonic)


class OkxExchange:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, idle_timeout_s: float = 30.0,
                 control: bool = False) -> None:
        self.host, self.port = host, port
        # HTTP /sim/* endpoints, for driving an exchange that runs in its own process.
        self.control = control
        self._firehose_task: asyncio.Task | None = None
        self.idle_timeout_s = idle_timeout_s
        self.tape: dict[str, list[dict]] = defaultdict(list)  # every trade ever emitted
        self._last_order: dict[str, list[dict]] = {}  # fills of the latest emitted order
        self.unknown_symbols: set[str] = set()  # subscribing to these gets error 60018
        self.silent = False  # when True: no pushes, no pongs (a stalled server)
        self.accepting = True  # when False: new connections are closed at once
        self.connections = 0
        self.pings = 0
        self.rest_requests = 0
        self._clients: set[Client] = set()
        self._rest_calls: deque[float] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> OkxExchange:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="okxsim", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test exchange did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> OkxExchange:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def ws_url(self, channel: str = "trades-all") -> str:
        path = next(p for p, c in CHANNEL_BY_PATH.items() if c == channel)
        return f"ws://{self.host}:{self.port}{path}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._handle, self.host, self.port, process_request=self._http, ping_interval=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            reaper = asyncio.create_task(self._reap_idle())
            self._ready.set()
            await self._stop
            reaper.cancel()

    def _call(self, coro, timeout_s: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    # -- control (from any thread) ------------------------------------------
    def emit(self, trades: list[dict]) -> None:
        """Print trades: tape them and push them to subscribers, one push per item on
        ``trades-all``, aggregated pushes with ``count`` on ``trades``."""
        self._call(self._emit(trades))

    def firehose(self, symbol: str, first_id: int, rate: float, duration_s: float, per_push: int = 1) -> dict:
        """Push consecutive trades of ``symbol`` at ``rate`` trades/s for ``duration_s``
        (see ``_firehose``) and return what was sent; blocks until done."""
        return self._call(self._firehose(symbol, first_id, rate, duration_s, per_push), duration_s + 30)

    def drop_connections(self) -> None:
        """Cut every client's TCP connection without a closing handshake."""
        self._call(self._drop())

    def send_raw(self, text: str) -> None:
        """Send an arbitrary text frame (garbage, notices) to every client."""
        self._call(self._broadcast(text))

    def notice_upgrade(self) -> None:
        self.send_raw(json.dumps({"event": "notice", "code": "64008", "msg": "The connection will soon be closed for a service upgrade."}))

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def subscribed(self, symbol: str) -> int:
        return sum(symbol in c.symbols for c in self._clients)

    # -- WebSocket ----------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        channel = CHANNEL_BY_PATH.get(ws.request.path.split("?")[0])
        if channel is None:
            await ws.close(1008, "unknown path")
            return
        if not self.accepting:
            await ws.close(1013, "try again later")
            return
        client = Client(ws, channel)
        self._clients.add(client)
        self.connections += 1
        try:
            async for message in ws:
                client.last_traffic = time.monotonic()
                if message == "ping":
                    self.pings += 1
                    if not self.silent:
                        await ws.send("pong")
                    continue
                await self._request(client, message)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)

    async def _request(self, client: Client, message: str) -> None:
        try:
            req = json.loads(message)
            op, args = req["op"], req["args"]
        except (ValueError, KeyError, TypeError):
            await client.ws.send(json.dumps({"event": "error", "code": "60012", "msg": f"Invalid request: {message[:100]}"}))
            return
        if op != "subscribe":
            await client.ws.send(json.dumps({"event": "error", "code": "60012", "msg": f"Invalid request: {message[:100]}"}))
            return
        for arg in args:
            symbol, channel = arg.get("instId"), arg.get("channel")
            if channel != client.channel:
                await client.ws.send(json.dumps({"event": "error", "code": "60018", "msg": f"Wrong URL or channel:{channel}"}))
                continue
            if symbol in self.unknown_symbols:
                await client.ws.send(json.dumps({"event": "error", "code": "60018", "msg": f"Wrong URL or channel:{channel},instId:{symbol} doesn't exist"}))
                continue
            client.symbols.add(symbol)
            await client.ws.send(json.dumps({"event": "subscribe", "arg": {"channel": channel, "instId": symbol}, "connId": "sim"}))
            # OKX re-sends the latest trade on subscribe (for `trades`, the latest
            # aggregated push, so it replaces itself under DEDUP).
            if symbol in self._last_order:
                await self._push(client, symbol, self._last_order[symbol], only_last=True)

    async def _push(self, client: Client, symbol: str, fills: list[dict], only_last: bool = False) -> None:
        items = aggregate(fills) if client.channel == "trades" else fills
        if only_last:
            items = items[-1:]
        arg = {"channel": client.channel, "instId": symbol}
        for item in items:
            try:
                await client.ws.send(json.dumps({"arg": arg, "data": [item]}))
            except ConnectionClosed:
                return
        client.last_traffic = time.monotonic()

    async def _emit(self, trades: list[dict]) -> None:
        by_symbol: dict[str, list[dict]] = defaultdict(list)
        for trade in trades:
            self.tape[trade["instId"]].append(trade)
            by_symbol[trade["instId"]].append(trade)
        self._last_order.update(by_symbol)
        if self.silent:
            return
        for client in list(self._clients):
            for symbol, fills in by_symbol.items():
                if symbol in client.symbols:
                    await self._push(client, symbol, fills)

    async def _firehose(self, symbol: str, first_id: int, rate: float, duration_s: float, per_push: int) -> dict:
        """A load generator on the exchange's own loop: frames built from a template (no
        per-trade json.dumps), ``per_push`` trades in each push's ``data`` (1 = OKX
        trades-all), paced to ``rate``. Sends wait for the socket, so a slow reader slows
        the firehose: ``achieved_rate`` says what was really offered. Not taped (a 60 s
        run would hold millions of dicts): no REST backfill for these trades.

        ``sent``: [first trade id, count, wall time the frames were handed to the socket]
        per burst, for latency measurements."""
        clients = [c for c in self._clients if symbol in c.symbols and c.channel == "trades-all"]
        head = '{"arg":' + json.dumps({"channel": "trades-all", "instId": symbol}, separators=(",", ":")) + ',"data":['
        item = ('{"instId":"' + symbol + '","tradeId":"%d","px":"%.1f","sz":"0.%05d","side":"%s","ts":"%s"}')
        sides = ("sell", "buy")
        sent: list[list] = []
        next_id = first_id
        started = time.monotonic()
        while (now := time.monotonic()) - started < duration_s:
            due = int(rate * (now - started)) - (next_id - first_id)
            if due <= 0:
                await asyncio.sleep(0.001)
                continue
            due = min(due, max(per_push, int(rate * 0.01)))  # bursts of at most 10 ms
            ts = str(int(time.time() * 1000))
            ids = range(next_id, next_id + due)
            items = [item % (i, 30000 + (i % 991) * 0.1, i % 99999 + 1, sides[i & 1], ts) for i in ids]
            frames = [head + ",".join(items[k:k + per_push]) + "]}" for k in range(0, due, per_push)]
            wall = time.time()
            for client in clients:
                for frame in frames:
                    try:
                        await client.ws.send(frame)
                    except ConnectionClosed:
                        break
                client.last_traffic = time.monotonic()
            sent.append([next_id, due, wall])
            next_id += due
            await asyncio.sleep(0)  # a firehose that is behind must still let HTTP and pings in
        elapsed = time.monotonic() - started
        emitted = next_id - first_id
        if emitted:
            last = next_id - 1
            self._last_order[symbol] = [json.loads(item % (last, 30000 + (last % 991) * 0.1, last % 99999 + 1,
                                                           sides[last & 1], ts))]
        return {"first_id": first_id, "last_id": next_id - 1, "emitted": emitted, "per_push": per_push,
                "achieved_rate": round(emitted / elapsed) if elapsed else 0, "seconds": round(elapsed, 1),
                "sent": sent}

    async def _drop(self) -> None:
        for client in list(self._clients):
            client.ws.transport.abort()
        self._clients.clear()

    async def _broadcast(self, text: str) -> None:
        for client in list(self._clients):
            try:
                await client.ws.send(text)
            except ConnectionClosed:
                pass

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for client in list(self._clients):
                if now - client.last_traffic > self.idle_timeout_s:
                    self._clients.discard(client)
                    await client.ws.close(4004, "No data received in 30s.")

    # -- REST ---------------------------------------------------------------
    async def _http(self, connection: ServerConnection, request):
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if self.control and url.path.startswith("/sim/"):
            return self._control(connection, url.path, query)
        if url.path != "/api/v5/market/history-trades":
            return _json(connection, 404, {"code": "50000", "msg": f"unknown path {url.path}", "data": []})
        self.rest_requests += 1
        now = time.monotonic()
        while self._rest_calls and now - self._rest_calls[0] > 2.0:
            self._rest_calls.popleft()
        if len(self._rest_calls) >= 20:
            return _json(connection, 429, {"code": "50011", "msg": "Too Many Requests", "data": []})
        self._rest_calls.append(now)
        return _json(connection, 200, {"code": "0", "msg": "", "data": self.history(query)})

    def _control(self, connection: ServerConnection, path: str, query: dict[str, str]):
        """GET /sim/status: subscriptions and the last firehose's result (null while one
        runs); GET /sim/firehose?symbol=&first_id=&rate=&duration=[&per_push=]: start one."""
        task = self._firehose_task
        if path == "/sim/status":
            result = task.result() if task and task.done() and not task.exception() else None
            error = repr(task.exception()) if task and task.done() and task.exception() else None
            subscribed = {sym: sum(sym in c.symbols for c in self._clients)
                          for sym in {sym for c in self._clients for sym in c.symbols}}
            return _json(connection, 200, {"clients": len(self._clients), "subscribed": subscribed,
                                           "firehose_running": bool(task and not task.done()),
                                           "firehose": result, "firehose_error": error})
        if path == "/sim/firehose":
            if task and not task.done():
                return _json(connection, 409, {"error": "a firehose is running"})
            try:
                args = (query["symbol"], int(query["first_id"]), float(query["rate"]), float(query["duration"]),
                        int(query.get("per_push", "1")))
            except (KeyError, ValueError) as exc:
                return _json(connection, 400, {"error": f"bad parameters: {exc}"})
            self._firehose_task = asyncio.get_running_loop().create_task(self._firehose(*args))
            return _json(connection, 202, {"started": True})
        return _json(connection, 404, {"error": f"unknown path {path}"})

    def history(self, query: dict[str, str]) -> list[dict]:
        tape = self.tape.get(query.get("instId", ""), [])
        limit = min(max(int(query.get("limit", "100")), 1), 100)
        newest_first = sorted(tape, key=lambda t: int(t["tradeId"]), reverse=True)
        if "after" in query:
            newest_first = [t for t in newest_first if int(t["tradeId"]) < int(query["after"])]
        if "before" in query:
            newest_first = [t for t in newest_first if int(t["tradeId"]) > int(query["before"])]
        return newest_first[:limit]


def _json(connection: ServerConnection, status: int, body: dict):
    response = connection.respond(status, json.dumps(body))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response

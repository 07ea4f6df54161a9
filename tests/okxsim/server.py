"""A local OKX v5 exchange that speaks the real protocol and misbehaves on request.

One port serves both sides:
- WebSocket ``/ws/v5/business`` (channel ``trades-all``) and ``/ws/v5/public``
  (channel ``trades``, fills aggregated with ``count``): subscribe / ack / push,
  text ``ping`` -> ``pong``, error events for unknown symbols, the 64008 notice,
  and a close with code 4004 after ``idle_timeout_s`` without traffic either way (OKX:
  "data has not been pushed for more than 30 seconds"; a client's ping counts too);
- REST ``GET /api/v5/market/history-trades?instId=&after=&before=&limit=`` (newest
  first, ids strictly below ``after`` / above ``before``, at most 100), rate limited to
  20 requests per 2 s like OKX (HTTP 429, code 50011).

Like OKX, a new subscription first gets the latest trade already printed.
Everything emitted is kept on a tape, so trades pushed while a client was away can
be fetched over REST. Control methods are thread-safe (the server runs its own loop).
The REST faults and WebSocket holes of ``OkxExchange`` are listed in its docstring.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import urllib.parse
from bisect import bisect_left, bisect_right
from collections import defaultdict, deque
from dataclasses import dataclass, field
from fractions import Fraction

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.okxsim.trades import aggregate

CHANNEL_BY_PATH = {"/ws/v5/business": "trades-all", "/ws/v5/public": "trades"}
HISTORY_PATH = "/api/v5/market/history-trades"
RATE_LIMIT = 20  # requests per RATE_WINDOW_S, per IP on OKX
RATE_WINDOW_S = 2.0
TOO_MANY = {"code": "50011", "msg": "Too Many Requests", "data": []}
UNAVAILABLE = {"code": "50001", "msg": "Service temporarily unavailable. Please try again later.", "data": []}


@dataclass(eq=False)  # identity hashing: clients live in a set
class Client:
    ws: ServerConnection
    channel: str
    symbols: set[str] = field(default_factory=set)
    last_traffic: float = field(default_factory=time.monotonic)


class OkxExchange:
    """The exchange. Besides ``emit`` / ``firehose`` and the WebSocket misbehaviours
    (``drop_connections``, ``send_raw``, ``notice_upgrade``, ``accepting``, ``silent``,
    ``unknown_symbols``), these can be set at any time from any thread:

    REST faults (``/api/v5/market/history-trades``; every other path 404s):
    - ``rest_outage(seconds)``: for that long every REST request is answered 503 with
      ``{"code": "50001", ...}`` like a host that is down (``rest_outage(0)`` ends it);
      each one is counted in ``rest_failed``. ``rest_down`` says whether one is on.
    - ``rest_429_ratio`` (0..1): that share of the requests that pass the real rate
      limit is answered 429 / code 50011, deterministically: request k of those since
      the ratio was last changed is refused iff floor(k*r) > floor((k-1)*r), so 0.5 is
      exactly every second request (the 2nd, 4th, ...), 1 all of them, 0 none.
    - ``rest_lag_s``: history-trades does not serve trades taped less than this many
      seconds ago (OKX's history trails its WebSocket); older trades below ``after``
      are still served.
    - ``history_reach`` (int | None): only the newest N trades of each symbol's tape are
      served (older ones are gone, as beyond OKX's ~3 months): a request whose ``after``
      is at or below the oldest served id gets ``data: []``. None: everything.
    - ``rest_extra_items``: a list of arbitrary items (dicts, strings, None...) inserted
      in the middle of the data of every history-trades answer that holds at least one
      trade (an empty answer stays ``[]``, it means "nothing older"); they do not count
      towards ``limit``. For the REST parser's rejection path.
    Counters: ``rest_requests`` (history-trades requests, whatever the answer),
    ``rest_failed`` (503s of an outage, any path), ``rest_throttled`` (429s, the real
    rate limit's and ``rest_429_ratio``'s), ``rest_served`` (200 answers).

    WebSocket holes (ranges apply to later ``emit`` calls, per symbol, ids inclusive):
    - ``hide(symbol, first_id, last_id)``: such trades are taped (served over REST) but
      not pushed, and not re-sent to a new subscriber as the latest trade: a gap at will.
    - ``forget(symbol, first_id, last_id)``: such trades are neither pushed nor taped, and
      those already taped in the range are removed from the tape: a hole nobody can fill.
    - ``clear_ranges(symbol=None)``: drop the hide / forget ranges (of one symbol).
    - ``emit_items(symbol, items)``: one push whose ``data`` is ``items`` as given (any
      JSON values, e.g. a price of "."), to every client subscribed to ``symbol``;
      neither taped nor served over REST.

    ``history(query)`` is what history-trades serves (lag and reach applied, no extra
    items): bisect on the tape, which ``emit`` keeps sorted by trade id, so it is cheap
    on tapes of millions of trades.

    With ``control=True`` the same are driven over HTTP (see ``_control``):
    ``/sim/rest?down_s=&ratio_429=&lag_s=&reach=&extra=`` (any subset; ``reach=none``
    clears it, ``extra`` is a JSON list; answers the REST state and counters),
    ``/sim/hide`` and ``/sim/forget?symbol=&first_id=&last_id=``, ``/sim/clear[?symbol=]``,
    ``/sim/items?symbol=&items=<JSON list>``, ``/sim/status`` and ``/sim/firehose``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, idle_timeout_s: float = 30.0,
                 control: bool = False) -> None:
        self.host, self.port = host, port
        # HTTP /sim/* endpoints, for driving an exchange that runs in its own process.
        self.control = control
        self._firehose_task: asyncio.Task | None = None
        self.idle_timeout_s = idle_timeout_s
        self.tape: dict[str, list[dict]] = defaultdict(list)  # every trade emitted, sorted by id
        self._ids: dict[str, list[int]] = defaultdict(list)  # the tape's trade ids, for bisect
        self._taped_at: dict[str, list[float]] = defaultdict(list)  # monotonic time taped, per trade
        self._times_sorted: dict[str, bool] = defaultdict(lambda: True)  # _taped_at ascending too?
        self._tape_lock = threading.Lock()  # emit (loop thread) vs history() (any thread)
        self._hidden: dict[str, tuple[tuple[int, int], ...]] = {}  # replaced, never mutated
        self._forgotten: dict[str, tuple[tuple[int, int], ...]] = {}
        self._last_order: dict[str, list[dict]] = {}  # fills of the latest emitted order
        self.unknown_symbols: set[str] = set()  # subscribing to these gets error 60018
        self.silent = False  # when True: no pushes, no pongs (a stalled server)
        self.accepting = True  # when False: new connections are closed at once
        self.connections = 0
        self.pings = 0
        self.rest_requests = 0
        self.rest_failed = 0
        self.rest_throttled = 0
        self.rest_served = 0
        self.rest_429_ratio = 0.0
        self.rest_lag_s = 0.0
        self.history_reach: int | None = None
        self.rest_extra_items: list = []
        self._rest_down_until = 0.0
        self._ratio_seen = 0.0  # the ratio the counter below counts for
        self._ratio_count = 0
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
        ``trades-all``, aggregated pushes with ``count`` on ``trades`` (except what
        ``hide`` / ``forget`` ranges hold back). Trade ids must be integers."""
        for trade in trades:
            int(trade["tradeId"])  # before anything is taped: a bad id is the caller's error
        self._call(self._emit(trades), 10 + len(trades) / 50_000)

    def emit_items(self, symbol: str, items: list) -> None:
        """One push with ``data`` = ``items`` verbatim to every subscriber of ``symbol``
        (in its own channel's ``arg``); not taped, so not served over REST either."""
        self._call(self._push_items(symbol, list(items)))

    def hide(self, symbol: str, first_id: int, last_id: int) -> None:
        """Trades of ``symbol`` with ids in [first_id, last_id] emitted from now on are
        taped (served over REST) but never pushed on the WebSocket."""
        self._hidden[symbol] = self._hidden.get(symbol, ()) + ((int(first_id), int(last_id)),)

    def forget(self, symbol: str, first_id: int, last_id: int) -> None:
        """Trades of ``symbol`` with ids in [first_id, last_id] are neither pushed nor
        served: those emitted from now on are dropped, those already taped are removed."""
        first_id, last_id = int(first_id), int(last_id)
        self._forgotten[symbol] = self._forgotten.get(symbol, ()) + ((first_id, last_id),)
        with self._tape_lock:
            ids = self._ids.get(symbol)
            if ids:
                lo, hi = bisect_left(ids, first_id), bisect_right(ids, last_id)
                if lo < hi:
                    for column in (self.tape[symbol], ids, self._taped_at[symbol]):
                        del column[lo:hi]

    def clear_ranges(self, symbol: str | None = None) -> None:
        """Forget the ``hide`` / ``forget`` ranges of ``symbol`` (of every symbol if None);
        trades already forgotten stay gone."""
        for ranges in (self._hidden, self._forgotten):
            if symbol is None:
                ranges.clear()
            else:
                ranges.pop(symbol, None)

    def rest_outage(self, seconds: float) -> None:
        """Answer every REST request 503 for the next ``seconds`` (0 ends an outage)."""
        self._rest_down_until = time.monotonic() + max(float(seconds), 0.0)

    @property
    def rest_down(self) -> bool:
        return time.monotonic() < self._rest_down_until

    def rest_state(self) -> dict:
        return {"down_for_s": round(max(self._rest_down_until - time.monotonic(), 0.0), 3),
                "ratio_429": self.rest_429_ratio, "lag_s": self.rest_lag_s, "reach": self.history_reach,
                "extra_items": self.rest_extra_items, "rest_requests": self.rest_requests,
                "rest_failed": self.rest_failed, "rest_throttled": self.rest_throttled,
                "rest_served": self.rest_served}

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
        now = time.monotonic()
        hidden, forgotten = self._hidden, self._forgotten
        with self._tape_lock:
            for trade in trades:
                symbol, trade_id = trade["instId"], int(trade["tradeId"])
                if (ranges := forgotten.get(symbol)) and _within(ranges, trade_id):
                    continue
                self._tape(symbol, trade_id, trade, now)
                if (ranges := hidden.get(symbol)) and _within(ranges, trade_id):
                    continue
                by_symbol[symbol].append(trade)
        self._last_order.update(by_symbol)
        if self.silent:
            return
        for client in list(self._clients):
            for symbol, fills in by_symbol.items():
                if symbol in client.symbols:
                    await self._push(client, symbol, fills)

    def _tape(self, symbol: str, trade_id: int, trade: dict, now: float) -> None:
        """Add one trade, keeping the tape sorted by id (appends, unless out of order)."""
        tape, ids, times = self.tape[symbol], self._ids[symbol], self._taped_at[symbol]
        if not ids or trade_id >= ids[-1]:
            tape.append(trade)
            ids.append(trade_id)
            times.append(now)
            return
        at = bisect_right(ids, trade_id)
        tape.insert(at, trade)
        ids.insert(at, trade_id)
        times.insert(at, now)
        self._times_sorted[symbol] = False  # newer than trades above it: lag filters slowly

    async def _push_items(self, symbol: str, items: list) -> None:
        if self.silent:
            return
        for client in list(self._clients):
            if symbol in client.symbols:
                frame = json.dumps({"arg": {"channel": client.channel, "instId": symbol}, "data": items})
                try:
                    await client.ws.send(frame)
                except ConnectionClosed:
                    continue
                client.last_traffic = time.monotonic()

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
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        if self.control and url.path.startswith("/sim/"):
            return await self._control(connection, url.path, query)
        is_history = url.path == HISTORY_PATH
        if is_history:
            self.rest_requests += 1
        if self.rest_down:
            self.rest_failed += 1
            return _json(connection, 503, UNAVAILABLE)
        if not is_history:
            return _json(connection, 404, {"code": "50000", "msg": f"unknown path {url.path}", "data": []})
        now = time.monotonic()
        while self._rest_calls and now - self._rest_calls[0] > RATE_WINDOW_S:
            self._rest_calls.popleft()
        if len(self._rest_calls) >= RATE_LIMIT:
            self.rest_throttled += 1
            return _json(connection, 429, TOO_MANY)
        self._rest_calls.append(now)
        if self._refuse_by_ratio():
            self.rest_throttled += 1
            return _json(connection, 429, TOO_MANY)
        try:
            data = self.history(query)
        except ValueError as exc:
            return _json(connection, 400, {"code": "51000", "msg": f"Parameter error: {exc}", "data": []})
        extra = self.rest_extra_items
        if data and extra:
            half = len(data) // 2
            data = data[:half] + list(extra) + data[half:]
        self.rest_served += 1
        return _json(connection, 200, {"code": "0", "msg": "", "data": data})

    def _refuse_by_ratio(self) -> bool:
        ratio = self.rest_429_ratio
        if ratio != self._ratio_seen:  # changed from outside: count afresh
            self._ratio_seen, self._ratio_count = ratio, 0
        if ratio <= 0:
            return False
        r = Fraction(min(float(ratio), 1.0)).limit_denominator(1_000_000)
        self._ratio_count += 1
        k = self._ratio_count
        return math.floor(k * r) > math.floor((k - 1) * r)

    async def _control(self, connection: ServerConnection, path: str, query: dict[str, str]):
        """GET /sim/status: subscriptions, REST state and the last firehose's result (null
        while one runs); GET /sim/firehose?symbol=&first_id=&rate=&duration=[&per_push=]:
        start one; GET /sim/rest?[down_s=][&ratio_429=][&lag_s=][&reach=<int>|none]
        [&extra=<JSON list>]: set those REST faults (all checked before any is set) and
        answer the REST state; GET /sim/hide, /sim/forget?symbol=&first_id=&last_id=;
        GET /sim/clear[?symbol=]; GET /sim/items?symbol=&items=<JSON list>: one raw push.
        Bad parameters: 400. These keep working during a REST outage."""
        task = self._firehose_task
        if path == "/sim/status":
            result = task.result() if task and task.done() and not task.exception() else None
            error = repr(task.exception()) if task and task.done() and task.exception() else None
            subscribed = {sym: sum(sym in c.symbols for c in self._clients)
                          for sym in {sym for c in self._clients for sym in c.symbols}}
            return _json(connection, 200, {"clients": len(self._clients), "subscribed": subscribed,
                                           "firehose_running": bool(task and not task.done()),
                                           "firehose": result, "firehose_error": error, "rest": self.rest_state()})
        try:
            if path == "/sim/firehose":
                if task and not task.done():
                    return _json(connection, 409, {"error": "a firehose is running"})
                args = (query["symbol"], int(query["first_id"]), float(query["rate"]), float(query["duration"]),
                        int(query.get("per_push", "1")))
                self._firehose_task = asyncio.get_running_loop().create_task(self._firehose(*args))
                return _json(connection, 202, {"started": True})
            if path == "/sim/rest":
                self._set_rest(query)
                return _json(connection, 200, self.rest_state())
            if path in ("/sim/hide", "/sim/forget"):
                args = (query["symbol"], int(query["first_id"]), int(query["last_id"]))
                (self.hide if path == "/sim/hide" else self.forget)(*args)
                return _json(connection, 200, {"ok": True})
            if path == "/sim/clear":
                self.clear_ranges(query.get("symbol") or None)
                return _json(connection, 200, {"ok": True})
            if path == "/sim/items":
                items = json.loads(query["items"])
                if not isinstance(items, list):
                    raise ValueError("items must be a JSON list")
                await self._push_items(query["symbol"], items)
                return _json(connection, 200, {"ok": True, "pushed": len(items)})
        except (KeyError, ValueError) as exc:
            return _json(connection, 400, {"error": f"bad parameters: {exc!r}"})
        return _json(connection, 404, {"error": f"unknown path {path}"})

    def _set_rest(self, query: dict[str, str]) -> None:
        down = ratio = lag = extra = None
        reach: int | None | bool = False  # False: not given
        if "down_s" in query:
            down = float(query["down_s"])
            if not 0 <= down < math.inf:
                raise ValueError(f"down_s={down}")
        if "ratio_429" in query:
            ratio = float(query["ratio_429"])
            if not 0 <= ratio <= 1:
                raise ValueError(f"ratio_429={ratio}")
        if "lag_s" in query:
            lag = float(query["lag_s"])
            if not 0 <= lag < math.inf:
                raise ValueError(f"lag_s={lag}")
        if "reach" in query:
            reach = None if query["reach"].lower() in ("", "none") else int(query["reach"])
            if reach is not None and reach < 0:
                raise ValueError(f"reach={reach}")
        if "extra" in query:
            extra = json.loads(query["extra"])
            if not isinstance(extra, list):
                raise ValueError("extra must be a JSON list")
        if down is not None:
            self.rest_outage(down)
        if ratio is not None:
            self.rest_429_ratio = ratio
        if lag is not None:
            self.rest_lag_s = lag
        if reach is not False:
            self.history_reach = reach
        if extra is not None:
            self.rest_extra_items = extra

    def history(self, query: dict[str, str]) -> list[dict]:
        """What history-trades answers ``query`` (``instId``, ``after``, ``before``,
        ``limit``): trades newest first, ids < ``after`` and > ``before``, at most
        ``limit`` (1..100, default 100), with ``rest_lag_s`` and ``history_reach``
        applied. O(log n + limit) per call. ValueError for a non-integer parameter."""
        limit = min(max(int(query.get("limit") or "100"), 1), 100)
        after = int(query["after"]) if query.get("after") else None
        before = int(query["before"]) if query.get("before") else None
        symbol = query.get("instId", "")
        lag, reach = float(self.rest_lag_s or 0), self.history_reach
        cutoff = time.monotonic() - lag
        with self._tape_lock:
            tape = self.tape.get(symbol)
            if not tape:
                return []
            ids, times = self._ids[symbol], self._taped_at[symbol]
            lo, hi = 0, len(tape)
            if reach is not None:
                lo = max(lo, hi - max(int(reach), 0))
            filter_lag = False
            if lag > 0:
                if self._times_sorted[symbol]:
                    hi = min(hi, bisect_right(times, cutoff))
                else:
                    filter_lag = True
            if after is not None and lo < hi:
                hi = bisect_left(ids, after, lo, hi)
            if before is not None and lo < hi:
                lo = bisect_right(ids, before, lo, hi)
            if lo >= hi:
                return []
            if not filter_lag:
                return tape[max(lo, hi - limit):hi][::-1]
            out = []
            for i in range(hi - 1, lo - 1, -1):  # out-of-order tape: lag filtered one by one
                if times[i] <= cutoff:
                    out.append(tape[i])
                    if len(out) == limit:
                        break
            return out


def _within(ranges: tuple[tuple[int, int], ...], trade_id: int) -> bool:
    return any(first <= trade_id <= last for first, last in ranges)


def _json(connection: ServerConnection, status: int, body: dict):
    response = connection.respond(status, json.dumps(body))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response

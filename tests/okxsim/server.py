"""A local OKX v5 exchange that speaks the real protocol and misbehaves on request.

One port serves both sides:
- WebSocket ``/ws/v5/business`` (channel ``trades-all``) and ``/ws/v5/public``
  (channel ``trades``, fills aggregated with ``count``): subscribe / ack / push,
  text ``ping`` -> ``pong``, error events for unknown symbols, the 64008 notice,
  and a close with code 4004 after ``idle_timeout_s`` without traffic either way (OKX:
  "data has not been pushed for more than 30 seconds"; a client's ping counts too);
- REST ``GET /api/v5/market/history-trades?instId=&after=&before=&limit=`` (newest
  first, ids strictly below ``after`` / above ``before``, at most 100), rate limited to
  20 requests per 2 s like OKX (HTTP 429, code 50011);
- REST ``GET /api/v5/public/instruments?instType=[&instId=]`` from an instrument
  catalogue (``list_instrument`` / ``delist`` / ``set_state`` / ``populate``), rate limited
  per IP and instType (20 / 2 s);
- a multi-symbol market at given rates (``market`` / ``start_market``), and OKX's
  WebSocket limits when configured (connection rate per IP, subscribe ops per connection
  per hour, request size), ``unsubscribe``.

Like OKX, a new subscription first gets the latest trade already printed.
Everything emitted is kept on a tape, so trades pushed while a client was away can
be fetched over REST. Control methods are thread-safe (the server runs its own loop).
The REST faults and WebSocket holes of ``OkxExchange`` are listed in its docstring.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
import urllib.parse
from bisect import bisect_left, bisect_right
from collections import defaultdict, deque
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.okxsim.trades import aggregate, catalogue, instrument_record, trade_rates

CHANNEL_BY_PATH = {"/ws/v5/business": "trades-all", "/ws/v5/public": "trades"}
HISTORY_PATH = "/api/v5/market/history-trades"
RATE_LIMIT = 20  # requests per RATE_WINDOW_S, per IP on OKX
RATE_WINDOW_S = 2.0
TOO_MANY = {"code": "50011", "msg": "Too Many Requests", "data": []}
UNAVAILABLE = {"code": "50001", "msg": "Service temporarily unavailable. Please try again later.", "data": []}
INSTRUMENTS_PATH = "/api/v5/public/instruments"
INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")
STATES = ("live", "suspend", "preopen", "test")
OP_LIMITED = ("subscribe", "unsubscribe", "login")  # OKX: 480 of these per connection per hour
TOO_FREQUENT = {"event": "error", "code": "60014", "msg": "Requests too frequent."}
LIMIT_KINDS = ("connect_rate", "subscribe_ops", "request_bytes")
_UNSET = object()


@dataclass(eq=False)  # identity hashing: clients live in a set
class Client:
    ws: ServerConnection
    channel: str
    symbols: set[str] = field(default_factory=set)
    last_traffic: float = field(default_factory=time.monotonic)
    conn_id: str = ""
    peer: str = ""
    opened_at: float = field(default_factory=time.time)  # wall clock
    subscribe_ops: int = 0  # subscribe/unsubscribe/login requests received (refused ones too)
    op_times: deque = field(default_factory=deque)  # monotonic times of those within the window


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

    Instrument catalogue (``GET /api/v5/public/instruments``):
    - ``list_instrument(inst_id, inst_type="SPOT", state="live", **fields)`` lists (or, for
      an id already listed, updates) one instrument; its OKX fields are derived from the id
      (``trades.instrument_record``) and ``fields`` override them. ``set_state(inst_id,
      state)`` (live | suspend | preopen | test), ``delist(inst_id)`` (removed; KeyError if
      not listed), ``populate(n_spot, n_swap, seed)`` (replaces the catalogue with a
      realistic one, ``trades.catalogue``), ``clear_instruments()``; ``instruments`` is every
      record (copies), ``instrument(inst_id)`` one or None.
    - Once anything has been listed (``catalogue_active``, until ``clear_instruments``), a
      subscribe to an instId that is not listed or not ``live`` gets error 60018 and the
      market prints only live instruments; before that any symbol is accepted (except
      ``unknown_symbols``). Instruments delisted or suspended while subscribed simply stop
      printing (nothing is sent, the subscription stays).
    - REST: ``instType`` required (HTTP 400, code 50014), one of SPOT MARGIN SWAP FUTURES
      OPTION (else 400, 51000); ``instId`` optional (not listed under that type: 400,
      51001); 20 requests per 2 s per (IP, instType) -> 429 / 50011. ``rest_outage`` and
      ``rest_429_ratio`` apply (the ratio counts instruments requests on their own).
      Counters: ``instrument_requests``, ``instrument_throttled``, ``instrument_served``
      (an outage's 503s count in ``rest_failed``).

    Market (``market`` / ``start_market`` / ``stop_market``): trades of many symbols at once
    at per-symbol rates (``trades.trade_rates`` gives a realistic skew), printed on the
    exchange's loop every 20 ms through ``emit``'s path (taped, served over REST, ``hide`` /
    ``forget`` apply, pushed to subscribers), ids consecutive per symbol, ``ts`` now.

    WebSocket limits, each off (None) unless configured (constructor, attributes or
    ``set_limits``):
    - ``connect_rate_limit``: WebSocket upgrades accepted per IP in any 1 s
      (``connect_window_s``); beyond, the upgrade is answered HTTP 429 (no WebSocket; a
      ``websockets`` client raises ``InvalidStatus`` with ``response.status_code == 429``).
      Refused upgrades do not count towards the limit.
    - ``subscribe_ops_per_hour``: subscribe/unsubscribe/login requests per connection in any
      ``subscribe_ops_window_s`` (3600 s); the one beyond is not carried out, it gets
      ``{"event":"error","code":"60014","msg":"Requests too frequent."}`` and the connection
      is closed (code 1008).
    - ``max_request_bytes``: a text frame longer than this (UTF-8 bytes) gets
      ``{"event":"error","code":"60012","msg":"Invalid request: ..."}`` and is not carried
      out (nor counted as an op); the connection stays open.
    Counters: ``refused_connections`` and ``limit_errors`` ({"connect_rate",
    "subscribe_ops", "request_bytes"} -> count); ``connections_info()`` lists each open
    connection (connId, channel, peer, symbols, subscribe_ops, opened_at).

    With ``control=True`` the same are driven over HTTP (see ``_control``):
    ``/sim/rest?down_s=&ratio_429=&lag_s=&reach=&extra=`` (any subset; ``reach=none``
    clears it, ``extra`` is a JSON list; answers the REST state and counters),
    ``/sim/hide`` and ``/sim/forget?symbol=&first_id=&last_id=``, ``/sim/clear[?symbol=]``,
    ``/sim/items?symbol=&items=<JSON list>``, ``/sim/status`` and ``/sim/firehose``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, idle_timeout_s: float = 30.0,
                 control: bool = False, connect_rate_limit: int | None = None,
                 subscribe_ops_per_hour: int | None = None, max_request_bytes: int | None = None) -> None:
        self.host, self.port = host, port
        # OKX's WebSocket limits; None: not enforced.
        self.connect_rate_limit = connect_rate_limit
        self.connect_window_s = 1.0
        self.subscribe_ops_per_hour = subscribe_ops_per_hour
        self.subscribe_ops_window_s = 3600.0
        self.max_request_bytes = max_request_bytes
        self.refused_connections = 0
        self.limit_errors: dict[str, int] = dict.fromkeys(LIMIT_KINDS, 0)
        self._connects: dict[str, deque[float]] = defaultdict(deque)  # per IP: accepted upgrades
        # The instrument catalogue: replaced on every change (copy on write), never mutated.
        self._instruments: dict[str, dict] = {}
        self._catalogue_lock = threading.Lock()
        self._catalogue_active = False
        self._ref_px: dict[str, float] = {}  # a price level per instrument, for the market
        self.instrument_requests = 0
        self.instrument_throttled = 0
        self.instrument_served = 0
        self._instrument_calls: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._market: _Market | None = None
        self._market_task: asyncio.Task | None = None
        self._market_next: dict[str, int] = {}  # next trade id per symbol, across market runs
        self._conn_seq = 0
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
        self._ratio_seen: dict[str, float] = defaultdict(float)  # per path: the ratio counted for
        self._ratio_count: dict[str, int] = defaultdict(int)
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

    # -- instrument catalogue (from any thread) -------------------------------
    @property
    def instruments(self) -> list[dict]:
        """Every listed instrument's OKX record (copies), in listing order."""
        return [dict(r) for r in self._instruments.values()]

    def instrument(self, inst_id: str) -> dict | None:
        record = self._instruments.get(inst_id)
        return dict(record) if record else None

    @property
    def catalogue_active(self) -> bool:
        """True once anything was listed: subscribes and the market then check the catalogue."""
        return self._catalogue_active

    def list_instrument(self, inst_id: str, inst_type: str = "SPOT", state: str = "live", **fields) -> dict:
        """List ``inst_id`` (its OKX record derived from the id, ``fields`` override; numbers
        as strings) and return the record. An id already listed under the same type keeps
        its record, with ``state`` and ``fields`` applied (re-listing a suspended one)."""
        if not inst_id or not isinstance(inst_id, str):
            raise ValueError(f"instId={inst_id!r}")
        if inst_type not in INST_TYPES:
            raise ValueError(f"instType={inst_type!r}")
        if state not in STATES:
            raise ValueError(f"state={state!r}")
        fields = {k: str(v) for k, v in fields.items()}
        with self._catalogue_lock:
            old = self._instruments.get(inst_id)
            if old and old["instType"] == inst_type:
                record = {**old, **fields, "state": state}
            else:
                record, px = instrument_record(inst_id, inst_type, state)
                record.update(fields)
                self._ref_px.setdefault(inst_id, px)
            self._instruments = {**self._instruments, inst_id: record}
            self._catalogue_active = True
        return dict(record)

    def set_state(self, inst_id: str, state: str) -> dict:
        """Change a listed instrument's ``state`` (KeyError if not listed)."""
        if state not in STATES:
            raise ValueError(f"state={state!r}")
        with self._catalogue_lock:
            record = {**self._instruments[inst_id], "state": state}
            self._instruments = {**self._instruments, inst_id: record}
        return dict(record)

    def delist(self, inst_id: str) -> None:
        """Remove ``inst_id`` from the catalogue (KeyError if not listed): no longer served
        over REST, no longer subscribable, no longer printed by the market."""
        with self._catalogue_lock:
            if inst_id not in self._instruments:
                raise KeyError(inst_id)
            self._instruments = {k: v for k, v in self._instruments.items() if k != inst_id}

    def populate(self, n_spot: int = 400, n_swap: int = 200, seed: int = 1) -> list[dict]:
        """Replace the catalogue with ``trades.catalogue(n_spot, n_swap, seed)``: majors
        first, then made-up coins; -USDT, -USDC (and a few -BTC) spot pairs, -USDT-SWAP (and
        a few inverse -USD-SWAP) perpetuals; about 3 % suspended and 1 % preopen (never the
        top 20). Deterministic per seed. Returns the records."""
        records = catalogue(n_spot, n_swap, seed)
        with self._catalogue_lock:
            self._instruments = {r["instId"]: r for r, _ in records}
            self._ref_px.update({r["instId"]: px for r, px in records})
            self._catalogue_active = True
        return [dict(r) for r, _ in records]

    def clear_instruments(self) -> None:
        """Empty the catalogue and stop checking it (any symbol subscribable again)."""
        with self._catalogue_lock:
            self._instruments = {}
            self._catalogue_active = False

    def live_instruments(self, inst_types: tuple[str, ...] = INST_TYPES) -> list[str]:
        return [r["instId"] for r in self._instruments.values() if r["state"] == "live" and r["instType"] in inst_types]

    def _subscribable(self, symbol: str) -> bool:
        if not self._catalogue_active:
            return True
        record = self._instruments.get(symbol)
        return record is not None and record["state"] == "live"

    def catalogue_state(self) -> dict:
        by_type: dict[str, int] = defaultdict(int)
        by_state: dict[str, int] = defaultdict(int)
        for r in self._instruments.values():
            by_type[r["instType"]] += 1
            by_state[r["state"]] += 1
        return {"active": self._catalogue_active, "count": len(self._instruments), "by_type": dict(by_type),
                "by_state": dict(by_state), "instrument_requests": self.instrument_requests,
                "instrument_throttled": self.instrument_throttled, "instrument_served": self.instrument_served}

    # -- limits and connections --------------------------------------------------
    def set_limits(self, connect_rate=_UNSET, ops_per_hour=_UNSET, max_request_bytes=_UNSET) -> dict:
        """Set any of ``connect_rate_limit``, ``subscribe_ops_per_hour``, ``max_request_bytes``
        (None or 0: off); all checked before any is set. Answers ``limits_state()``."""
        given = {"connect_rate_limit": connect_rate, "subscribe_ops_per_hour": ops_per_hour,
                 "max_request_bytes": max_request_bytes}
        values = {}
        for name, value in given.items():
            if value is _UNSET:
                continue
            value = None if value in (None, 0) else int(value)
            if value is not None and value < 0:
                raise ValueError(f"{name}={value}")
            values[name] = value
        for name, value in values.items():
            setattr(self, name, value)
        return self.limits_state()

    def limits_state(self) -> dict:
        return {"connect_rate": self.connect_rate_limit, "ops_per_hour": self.subscribe_ops_per_hour,
                "max_request_bytes": self.max_request_bytes, "refused_connections": self.refused_connections,
                "limit_errors": dict(self.limit_errors)}

    def connections_info(self) -> list[dict]:
        """Each open WebSocket connection: connId, channel, peer IP, symbols (sorted),
        subscribe_ops (subscribe/unsubscribe/login requests it sent), opened_at (epoch s)."""
        return self._on_loop(self._connections_info)

    def _connections_info(self) -> list[dict]:
        return [{"connId": c.conn_id, "channel": c.channel, "peer": c.peer, "symbols": sorted(c.symbols),
                 "subscribe_ops": c.subscribe_ops, "opened_at": c.opened_at}
                for c in sorted(self._clients, key=lambda c: c.conn_id)]

    def _on_loop(self, fn):
        """``fn()`` run on the exchange's loop (directly when already there)."""
        if self._loop is None or threading.current_thread() is self._thread:
            return fn()

        async def run():
            return fn()
        return self._call(run())

    # -- market -------------------------------------------------------------------
    def start_market(self, rates: dict[str, float], duration_s: float | None = None,
                     first_id: int = 1_000_000, seed: int = 1) -> None:
        """Start printing every symbol of ``rates`` at its rate (trades/s) on the exchange's
        loop, for ``duration_s`` (None: until ``stop_market``). A symbol's ids continue from
        its tape (or an earlier market run), else start at ``first_id``. With the catalogue
        active only live instruments print (a paused symbol accrues nothing). RuntimeError
        if a market is running."""
        rates = {str(k): float(v) for k, v in rates.items()}
        if any(not 0 <= r < math.inf for r in rates.values()):
            raise ValueError("rates must be finite and >= 0")
        self._call(self._start_market(rates, duration_s, int(first_id), seed))

    async def _start_market(self, rates, duration_s, first_id, seed) -> None:
        if self._market_task and not self._market_task.done():
            raise RuntimeError("a market is running")
        self._market = _Market(rates, duration_s, first_id, seed)
        self._market_task = asyncio.get_running_loop().create_task(self._run_market(self._market))

    def stop_market(self, timeout_s: float = 30.0) -> dict[str, list[int]]:
        """Stop the market (if running), wait for it and return the ids it printed per
        symbol (symbols that printed nothing are left out). {} if none was started."""
        market, task = self._market, self._market_task
        if market is None or task is None:
            return {}
        market.stopping = True
        if not task.done():
            async def finished():
                await asyncio.wait([task])
            self._call(finished(), timeout_s)
        return self._on_loop(market.ids)

    def market(self, rates: dict[str, float], duration_s: float, first_id: int = 1_000_000,
               seed: int = 1) -> dict[str, list[int]]:
        """``start_market`` for ``duration_s`` and wait: the ids printed per symbol."""
        self.start_market(rates, duration_s, first_id, seed)

        async def finished():
            await asyncio.wait([self._market_task])
        self._call(finished(), duration_s + 30)
        return self.stop_market()

    @property
    def market_running(self) -> bool:
        return bool(self._market_task and not self._market_task.done())

    def market_printed(self) -> dict[str, list[int]]:
        """The ids printed so far by the current (or last) market, per symbol."""
        market = self._market
        return self._on_loop(market.ids) if market else {}

    def market_rate(self, symbol: str, rate: float) -> None:
        """Set (add, or 0 to pause) one symbol's rate in the running market, e.g. a new
        listing's. RuntimeError if no market runs."""
        rate = float(rate)
        if not 0 <= rate < math.inf:
            raise ValueError(f"rate={rate}")
        market = self._market
        if market is None or not self.market_running:
            raise RuntimeError("no market is running")

        def apply():
            market.rates[symbol] = rate
        self._on_loop(apply)

    def market_state(self) -> dict:
        market, task = self._market, self._market_task
        if market is None:
            return {"running": False}
        error = repr(task.exception()) if task and task.done() and not task.cancelled() and task.exception() else None
        return {"running": self.market_running, "error": error, **self._on_loop(market.summary)}

    async def _run_market(self, m: _Market) -> None:
        tick = 0.02
        end = m.started + m.duration_s if m.duration_s is not None else math.inf
        last = m.started
        while not m.stopping:
            await asyncio.sleep(max(0.0, min(tick, end - time.monotonic())))
            now = min(time.monotonic(), end)
            dt, last = now - last, now
            trades: list[dict] = []
            ts = str(int(time.time() * 1000))
            for symbol, rate in list(m.rates.items()):
                if rate <= 0 or not self._subscribable(symbol):
                    continue
                acc = m.acc.get(symbol, 0.0) + rate * dt
                n = int(acc)
                m.acc[symbol] = acc - n
                if n:
                    trades.extend(self._market_trades(m, symbol, n, ts))
            if trades:
                await self._emit(trades)
            if now >= end:
                break
        m.ended = time.monotonic()

    def _market_trades(self, m: _Market, symbol: str, n: int, ts: str) -> list[dict]:
        walk = m.walks.get(symbol)
        if walk is None:
            record = self._instruments.get(symbol) or {}
            tick = Decimal(record.get("tickSz") or "0.1")
            lot = Decimal(record.get("lotSz") or "0.0001")
            ticks = max(1, int(Decimal(str(self._ref_px.get(symbol, 100.0))) / tick))
            with self._tape_lock:
                ids = self._ids.get(symbol)
                taped = ids[-1] + 1 if ids else m.first_id
            next_id = max(taped, self._market_next.get(symbol, 0))
            walk = m.walks[symbol] = [next_id, ticks, tick, lot, max(-tick.as_tuple().exponent, 0),
                                      max(-lot.as_tuple().exponent, 0)]
        next_id, ticks, tick, lot, px_dec, sz_dec = walk
        rng, out = m.rng, []
        ids = m.printed.setdefault(symbol, [])
        for i in range(next_id, next_id + n):
            ticks = max(1, ticks + rng.randint(-3, 3))
            out.append({"instId": symbol, "tradeId": str(i), "px": f"{float(ticks * tick):.{px_dec}f}",
                        "sz": f"{float(rng.randint(1, 2000) * lot):.{sz_dec}f}", "side": rng.choice(("buy", "sell")),
                        "ts": ts})
            ids.append(i)
        walk[0], walk[1] = next_id + n, ticks
        self._market_next[symbol] = next_id + n
        return out

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
        self._conn_seq += 1
        peer = ws.remote_address[0] if ws.remote_address else ""
        client = Client(ws, channel, conn_id=f"{self._conn_seq:08x}", peer=peer)
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
                limit = self.max_request_bytes
                if limit is not None and len(message if isinstance(message, bytes) else message.encode()) > limit:
                    self.limit_errors["request_bytes"] += 1
                    await ws.send(json.dumps({"event": "error", "code": "60012",
                                              "msg": f"Invalid request: larger than {limit} bytes"}))
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
        if op in OP_LIMITED:
            client.subscribe_ops += 1
            limit = self.subscribe_ops_per_hour
            if limit is not None:
                now, times = time.monotonic(), client.op_times
                while times and now - times[0] >= self.subscribe_ops_window_s:
                    times.popleft()
                if len(times) >= limit:
                    self.limit_errors["subscribe_ops"] += 1
                    self._clients.discard(client)
                    try:
                        await client.ws.send(json.dumps(TOO_FREQUENT))
                    except ConnectionClosed:
                        pass
                    await client.ws.close(1008, "Requests too frequent.")
                    return
                times.append(now)
        if op not in ("subscribe", "unsubscribe"):
            await client.ws.send(json.dumps({"event": "error", "code": "60012", "msg": f"Invalid request: {message[:100]}"}))
            return
        for arg in args:
            symbol, channel = arg.get("instId"), arg.get("channel")
            if channel != client.channel:
                await client.ws.send(json.dumps({"event": "error", "code": "60018", "msg": f"Wrong URL or channel:{channel}"}))
                continue
            if op == "unsubscribe":  # OKX acks it whether or not it was subscribed
                client.symbols.discard(symbol)
                await client.ws.send(json.dumps({"event": "unsubscribe", "arg": {"channel": channel, "instId": symbol},
                                                 "connId": client.conn_id}))
                continue
            if symbol in self.unknown_symbols or not self._subscribable(symbol):
                await client.ws.send(json.dumps({"event": "error", "code": "60018", "msg": f"Wrong URL or channel:{channel},instId:{symbol} doesn't exist"}))
                continue
            client.symbols.add(symbol)
            await client.ws.send(json.dumps({"event": "subscribe", "arg": {"channel": channel, "instId": symbol}, "connId": client.conn_id}))
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
            return self._admit(connection)
        url = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        if self.control and url.path.startswith("/sim/"):
            return await self._control(connection, url.path, query)
        is_history = url.path == HISTORY_PATH
        if is_history:
            self.rest_requests += 1
        elif url.path == INSTRUMENTS_PATH:
            self.instrument_requests += 1
        if self.rest_down:
            self.rest_failed += 1
            return _json(connection, 503, UNAVAILABLE)
        if url.path == INSTRUMENTS_PATH:
            return self._serve_instruments(connection, query)
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

    def _admit(self, connection: ServerConnection):
        """A WebSocket upgrade: None to go ahead, or HTTP 429 beyond ``connect_rate_limit``."""
        limit = self.connect_rate_limit
        if limit is None:
            return None
        ip = connection.remote_address[0] if connection.remote_address else ""
        now, times = time.monotonic(), self._connects[ip]
        while times and now - times[0] >= self.connect_window_s:
            times.popleft()
        if len(times) >= limit:
            self.refused_connections += 1
            self.limit_errors["connect_rate"] += 1
            return _json(connection, 429, TOO_MANY)
        times.append(now)
        return None

    def _serve_instruments(self, connection: ServerConnection, query: dict[str, str]):
        inst_type, inst_id = query.get("instType", ""), query.get("instId", "")
        if not inst_type:
            return _json(connection, 400, {"code": "50014", "msg": "Parameter instType can not be empty.", "data": []})
        if inst_type not in INST_TYPES:
            return _json(connection, 400, {"code": "51000", "msg": "Parameter instType error", "data": []})
        ip = connection.remote_address[0] if connection.remote_address else ""
        now, calls = time.monotonic(), self._instrument_calls[(ip, inst_type)]
        while calls and now - calls[0] > RATE_WINDOW_S:
            calls.popleft()
        if len(calls) >= RATE_LIMIT:
            self.instrument_throttled += 1
            return _json(connection, 429, TOO_MANY)
        calls.append(now)
        if self._refuse_by_ratio("instruments"):
            self.instrument_throttled += 1
            return _json(connection, 429, TOO_MANY)
        data = [r for r in self._instruments.values()
                if r["instType"] == inst_type and (not inst_id or r["instId"] == inst_id)]
        if inst_id and not data:
            return _json(connection, 400, {"code": "51001", "data": [],
                                           "msg": "Instrument ID, Instrument ID code, or Spread ID doesn't exist."})
        self.instrument_served += 1
        return _json(connection, 200, {"code": "0", "msg": "", "data": data})

    def _refuse_by_ratio(self, key: str = "history") -> bool:
        ratio = self.rest_429_ratio
        if ratio != self._ratio_seen[key]:  # changed from outside: count afresh
            self._ratio_seen[key], self._ratio_count[key] = ratio, 0
        if ratio <= 0:
            return False
        r = Fraction(min(float(ratio), 1.0)).limit_denominator(1_000_000)
        self._ratio_count[key] += 1
        k = self._ratio_count[key]
        return math.floor(k * r) > math.floor((k - 1) * r)

    async def _control(self, connection: ServerConnection, path: str, query: dict[str, str]):
        """GET /sim/status: subscriptions, REST state and the last firehose's result (null
        while one runs); GET /sim/firehose?symbol=&first_id=&rate=&duration=[&per_push=]:
        start one; GET /sim/rest?[down_s=][&ratio_429=][&lag_s=][&reach=<int>|none]
        [&extra=<JSON list>]: set those REST faults (all checked before any is set) and
        answer the REST state; GET /sim/hide, /sim/forget?symbol=&first_id=&last_id=;
        GET /sim/clear[?symbol=]; GET /sim/items?symbol=&items=<JSON list>: one raw push.

        Instruments, limits, market:
        GET /sim/instruments[?populate=<n_spot>,<n_swap>[&seed=]][&clear=1]: replace the
        catalogue with a populated one (or empty it); answers its counts (also without
        parameters). GET /sim/list?instId=[&instType=SPOT][&state=live][&rate=][&<OKX field>=]:
        list one (other parameters are OKX fields, e.g. tickSz); with ``rate`` and a market
        running it also prints at that rate; answers the record. GET /sim/state?instId=&state=.
        GET /sim/delist?instId=: 404 if not listed. GET /sim/limits[?connect_rate=]
        [&ops_per_hour=][&max_request_bytes=] (0 or none: off): answers limits and counters.
        GET /sim/connections: ``connections_info()``. GET /sim/market?total_rate=[&duration=]
        [&seed=1][&exponent=1][&inst_types=SPOT,SWAP][&first_id=]: start a market over the live
        instruments of those types (all types if not given) at ``trade_rates(total_rate, ...,
        seed, exponent)``, for ``duration`` s (absent: until /sim/market?stop=1); 202, 409 if
        one runs, 400 with no live instrument. /sim/status's ``market``: running, printed
        {symbol: [first id, last id, count]}, emitted, seconds, achieved_rate, total_rate.
        Bad parameters: 400. These keep working during a REST outage."""
        task = self._firehose_task
        if path == "/sim/status":
            result = task.result() if task and task.done() and not task.exception() else None
            error = repr(task.exception()) if task and task.done() and task.exception() else None
            subscribed = {sym: sum(sym in c.symbols for c in self._clients)
                          for sym in {sym for c in self._clients for sym in c.symbols}}
            return _json(connection, 200, {"clients": len(self._clients), "subscribed": subscribed,
                                           "firehose_running": bool(task and not task.done()),
                                           "firehose": result, "firehose_error": error, "rest": self.rest_state(),
                                           "instruments": self.catalogue_state(), "limits": self.limits_state(),
                                           "market": self.market_state()})
        try:
            if path == "/sim/instruments":
                if query.get("clear") in ("1", "true"):
                    self.clear_instruments()
                if "populate" in query:
                    n_spot, n_swap = (int(x) for x in query["populate"].split(","))
                    self.populate(n_spot, n_swap, int(query.get("seed", "1")))
                return _json(connection, 200, self.catalogue_state())
            if path == "/sim/list":
                fields = {k: v for k, v in query.items() if k not in ("instId", "instType", "state", "rate")}
                rate = float(query["rate"]) if query.get("rate") else None
                record = self.list_instrument(query["instId"], query.get("instType") or "SPOT",
                                              query.get("state") or "live", **fields)
                if rate is not None and self.market_running:
                    self._market.rates[record["instId"]] = max(rate, 0.0)
                return _json(connection, 200, record)
            if path == "/sim/state":
                return _json(connection, 200, self.set_state(query["instId"], query["state"]))
            if path == "/sim/delist":
                if query["instId"] not in self._instruments:
                    return _json(connection, 404, {"error": f"{query['instId']} is not listed"})
                self.delist(query["instId"])
                return _json(connection, 200, {"ok": True, "delisted": query["instId"]})
            if path == "/sim/limits":
                keys = {"connect_rate": "connect_rate", "ops_per_hour": "ops_per_hour",
                        "max_request_bytes": "max_request_bytes"}
                given = {name: (None if query[key].lower() in ("", "none") else int(query[key]))
                         for key, name in keys.items() if key in query}
                return _json(connection, 200, self.set_limits(**given))
            if path == "/sim/connections":
                return _json(connection, 200, {"connections": self._connections_info()})
            if path == "/sim/market":
                if query.get("stop") in ("1", "true"):
                    if self._market:
                        self._market.stopping = True
                    return _json(connection, 200, {"stopping": True})
                if self.market_running:
                    return _json(connection, 409, {"error": "a market is running"})
                types = tuple(t for t in query.get("inst_types", "").split(",") if t) or INST_TYPES
                symbols = self.live_instruments(types)
                if not symbols:
                    raise ValueError("no live instrument to print")
                total = float(query["total_rate"])
                rates = trade_rates(total, symbols, int(query.get("seed", "1")), float(query.get("exponent", "1")))
                duration = float(query["duration"]) if query.get("duration") else None
                if duration is not None and not 0 < duration < math.inf:
                    raise ValueError(f"duration={duration}")
                await self._start_market(rates, duration, int(query.get("first_id", "1000000")),
                                         int(query.get("seed", "1")))
                return _json(connection, 202, {"started": True, "symbols": len(rates),
                                               "busiest": [[s, round(r, 3)] for s, r in list(rates.items())[:5]]})
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


class _Market:
    """One market run's state; touched on the exchange's loop only (``stopping`` aside)."""

    def __init__(self, rates: dict[str, float], duration_s: float | None, first_id: int, seed: int) -> None:
        self.rates = dict(rates)
        self.duration_s = duration_s
        self.first_id = first_id
        self.rng = random.Random(seed)
        self.acc: dict[str, float] = {}
        self.walks: dict[str, list] = {}  # symbol -> [next id, price in ticks, tick, lot, decimals...]
        self.printed: dict[str, list[int]] = {}
        self.started = time.monotonic()
        self.ended: float | None = None
        self.stopping = False

    def ids(self) -> dict[str, list[int]]:
        return {symbol: list(ids) for symbol, ids in self.printed.items() if ids}

    def summary(self) -> dict:
        """Per symbol [first id, last id, count]; totals; what was asked."""
        seconds = (self.ended or time.monotonic()) - self.started
        emitted = sum(len(ids) for ids in self.printed.values())
        return {"printed": {s: [ids[0], ids[-1], len(ids)] for s, ids in self.printed.items() if ids},
                "emitted": emitted, "seconds": round(seconds, 3),
                "achieved_rate": round(emitted / seconds, 1) if seconds > 0 else 0,
                "total_rate": round(sum(self.rates.values()), 3), "symbols": len(self.rates),
                "duration_s": self.duration_s}


def _within(ranges: tuple[tuple[int, int], ...], trade_id: int) -> bool:
    return any(first <= trade_id <= last for first, last in ranges)


def _json(connection: ServerConnection, status: int, body: dict):
    response = connection.respond(status, json.dumps(body))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response

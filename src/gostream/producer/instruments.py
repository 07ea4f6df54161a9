"""Which instruments to follow: exact ids and shell-style patterns resolved against OKX's
instrument list (REST ``public/instruments``), re-read periodically so new listings are
picked up and delisted or suspended ones dropped.

The parsing and matching are pure; ``Catalogue`` does the I/O (its own small rate limit:
OKX allows 20 requests / 2 s per IP and instrument type, and we ask once a refresh).
``Registry`` keeps what OKX says of each followed instrument (tick size, lot size ...) in
QuestDB's ``instruments`` table, for the api to print prices and sizes with their decimals.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import astuple, dataclass, field

from gostream.common.schema import INSTRUMENTS_TABLE, execute, query
from gostream.common.trade import SYMBOL_PATTERN

log = logging.getLogger(__name__)

INST_TYPES = ("SPOT", "SWAP", "FUTURES")
_GLOB = re.compile(r"[*?\[]")


def is_pattern(spec: str) -> bool:
    return bool(_GLOB.search(spec))


# OKX's sizes are plain decimals ("0.1", "0.00000001", "10"); anything else is not kept.
_DECIMAL = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")
_CCY = re.compile(r"^[A-Z0-9]{1,20}$")
_WORD = re.compile(r"^[A-Za-z_]{1,20}$")
# OKX field -> Listing field, for the metadata kept (decimals; "" when OKX gives none).
DECIMAL_FIELDS = {"tickSz": "tick_sz", "lotSz": "lot_sz", "minSz": "min_sz", "ctVal": "ct_val"}


@dataclass(frozen=True)
class Listing:
    inst_id: str
    inst_type: str
    state: str
    tick_sz: str = ""
    lot_sz: str = ""
    min_sz: str = ""
    ct_val: str = ""
    base_ccy: str = ""
    quote_ccy: str = ""


def _listing(item: dict, rejected: list[str]) -> Listing | None:
    inst_id, kind, state = item.get("instId"), item.get("instType"), item.get("state")
    if not isinstance(inst_id, str) or not SYMBOL_PATTERN.fullmatch(inst_id):
        rejected.append("bad-instId")
        return None
    if not isinstance(kind, str) or not isinstance(state, str) or not _WORD.fullmatch(kind) \
            or not _WORD.fullmatch(state):
        rejected.append("bad-field")
        return None
    meta: dict[str, str] = {}
    for okx_name, name in DECIMAL_FIELDS.items():
        value = item.get(okx_name, "")
        if value == "" or value is None:
            meta[name] = ""
        elif isinstance(value, str) and _DECIMAL.fullmatch(value):
            meta[name] = value
        else:  # the instrument is still followed, only this field is not known
            rejected.append(f"bad-{okx_name}")
            meta[name] = ""
    # SWAP and FUTURES records leave baseCcy/quoteCcy empty: the id says them (BTC-USDT-SWAP).
    parts = inst_id.split("-")
    for okx_name, name, fallback in (("baseCcy", "base_ccy", parts[0]), ("quoteCcy", "quote_ccy", parts[1])):
        value = item.get(okx_name)
        meta[name] = value if isinstance(value, str) and _CCY.fullmatch(value) else fallback
    return Listing(inst_id, kind, state, **meta)


def parse_instruments(body: bytes | str) -> tuple[list[Listing], list[str], str | None]:
    """(listings, rejected reasons, error) of one ``public/instruments`` answer. Never
    raises: a bad item is a reason, a bad envelope the error; a bad size field (tickSz,
    lotSz, minSz, ctVal) is a reason too, the listing kept without it."""
    try:
        msg = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return [], [], f"not JSON: {str(exc)[:100]}"
    if not isinstance(msg, dict):
        return [], [], f"not an object ({type(msg).__name__})"
    if msg.get("code") != "0":
        return [], [], f"okx code {str(msg.get('code'))[:20]}: {str(msg.get('msg'))[:200]}"
    data = msg.get("data")
    if not isinstance(data, list):
        return [], [], f"data is not a list ({type(data).__name__})"
    listings, rejected = [], []
    for item in data:
        if not isinstance(item, dict):
            rejected.append("bad-item")
            continue
        listing = _listing(item, rejected)
        if listing is not None:
            listings.append(listing)
    return listings, rejected, None


@dataclass
class Resolution:
    symbols: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def resolve(specs: tuple[str, ...], listings: list[Listing] | None) -> Resolution:
    """The instruments ``specs`` name. Exact ids are always followed (OKX itself says when
    one does not exist) unless the list shows them not live; patterns match live listings
    only, and need the list (None: not known yet)."""
    out = Resolution()
    live = {item.inst_id for item in listings or () if item.state == "live"}
    states = {item.inst_id: item.state for item in listings or ()}
    for spec in specs:
        if is_pattern(spec):
            if listings is None:
                continue
            matched = {inst_id for inst_id in live if fnmatch.fnmatchcase(inst_id, spec)}
            if not matched:
                out.problems.append(f"instruments: {spec!r} matches no live instrument")
            out.symbols |= matched
        elif listings is not None and spec in states and states[spec] != "live":
            out.problems.append(f"instruments: {spec} is {states[spec]}, not live: not followed")
        else:
            out.symbols.add(spec)
    return out


class Catalogue:
    """OKX's instrument list for some instrument types, over REST."""

    def __init__(self, rest_url: str, timeout_s: float = 10.0) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.timeout_s = timeout_s

    def fetch(self, inst_types: tuple[str, ...]) -> list[Listing]:
        """Every listing of those types; OSError or ValueError (with OKX's words) on failure."""
        listings: list[Listing] = []
        for kind in inst_types:
            url = f"{self.rest_url}/api/v5/public/instruments?" + urllib.parse.urlencode({"instType": kind})
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                    body = response.read()
            except urllib.error.HTTPError as exc:
                raise OSError(f"public/instruments {kind}: HTTP {exc.code}") from None
            found, rejected, error = parse_instruments(body)
            if error:
                raise ValueError(f"public/instruments {kind}: {error}")
            if rejected:
                log.warning("instrument items rejected", extra={"inst_type": kind, "reasons": sorted(set(rejected)),
                                                                "count": len(rejected)})
            listings += found
        return listings


def _sql_text(text: str) -> str:
    return "NULL" if text == "" else "'" + text.replace("'", "''") + "'"


# The table's columns in Listing's field order (inst_id is the symbol).
_COLUMNS = ("symbol", "inst_type", "state", "tick_sz", "lot_sz", "min_sz", "ct_val", "base_ccy", "quote_ccy")


def upsert_sql(listings: list[Listing]) -> str:
    """One INSERT of these listings' rows (ts the epoch: DEDUP replaces each symbol's row).
    Only parsed values reach it: ids, types, states and currencies of a strict shape,
    decimals of digits and a point."""
    rows = ",".join(
        "(" + ",".join(_sql_text(v) for v in astuple(item)) + ",now(),0)" for item in listings)
    return f"INSERT INTO {INSTRUMENTS_TABLE} ({', '.join(_COLUMNS)}, updated_at, ts) VALUES {rows}"


def _stored(row: dict) -> Listing:
    return Listing(*(row[name] or "" for name in _COLUMNS))


class Registry:
    """The metadata of the followed instruments in QuestDB: a row is written when a symbol
    is new or what OKX says of it changed, not on every refresh. What the table holds is
    read once (so a restart writes nothing new); a write that fails is tried again with
    the next refresh."""

    BATCH = 100  # rows per INSERT (the statement travels in the URL)

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.known: dict[str, Listing] | None = None  # what the table holds, once read

    def changed(self, listings: list[Listing], symbols: set[str]) -> list[Listing]:
        known = self.known or {}
        return [item for item in listings if item.inst_id in symbols and known.get(item.inst_id) != item]

    def store(self, listings: list[Listing], symbols: set[str]) -> int:
        """Write the rows of ``symbols`` that differ from the table's; how many were
        written. OSError or SchemaError when QuestDB did not take them."""
        if self.known is None:
            rows = query(self.base_url, f"SELECT {', '.join(_COLUMNS)} FROM {INSTRUMENTS_TABLE}")
            self.known = {row["symbol"]: _stored(row) for row in rows}
        changed = self.changed(listings, symbols)
        for start in range(0, len(changed), self.BATCH):
            batch = changed[start:start + self.BATCH]
            execute(self.base_url, upsert_sql(batch))
            self.known.update((item.inst_id, item) for item in batch)
        return len(changed)

"""Which instruments to follow: exact ids and shell-style patterns resolved against OKX's
instrument list (REST ``public/instruments``), re-read periodically so new listings are
picked up and delisted or suspended ones dropped.

The parsing and matching are pure; ``Catalogue`` does the I/O (its own small rate limit:
OKX allows 20 requests / 2 s per IP and instrument type, and we ask once a refresh).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from gostream.common.trade import SYMBOL_PATTERN

log = logging.getLogger(__name__)

INST_TYPES = ("SPOT", "SWAP", "FUTURES")
_GLOB = re.compile(r"[*?\[]")


def is_pattern(spec: str) -> bool:
    return bool(_GLOB.search(spec))


@dataclass(frozen=True)
class Listing:
    inst_id: str
    inst_type: str
    state: str


def parse_instruments(body: bytes | str) -> tuple[list[Listing], list[str], str | None]:
    """(listings, rejected reasons, error) of one ``public/instruments`` answer. Never
    raises: a bad item is a reason, a bad envelope the error."""
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
        inst_id, kind, state = item.get("instId"), item.get("instType"), item.get("state")
        if not isinstance(inst_id, str) or not SYMBOL_PATTERN.fullmatch(inst_id):
            rejected.append("bad-instId")
        elif not isinstance(kind, str) or not isinstance(state, str):
            rejected.append("bad-field")
        else:
            listings.append(Listing(inst_id, kind, state))
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

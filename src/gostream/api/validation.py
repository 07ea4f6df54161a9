"""Query-string checking: every parameter is parsed here or the request gets a 400."""

from __future__ import annotations

import re
from collections.abc import Iterable

from werkzeug.datastructures import MultiDict

from gostream.api.queries import INTERVALS, Interval
from gostream.common.trade import SYMBOL_PATTERN

MAX_EPOCH_S = 4_102_444_800  # 2100-01-01, as for trades
MAX_CANDLES = 5000
DEFAULT_CANDLES = 500
MAX_TRADES = 1000
DEFAULT_TRADES = 100
_INT = re.compile(r"^[0-9]{1,18}$")


class BadRequest(ValueError):
    """A parameter the api cannot use; the message says which and why."""


def _one(args: MultiDict, name: str) -> str | None:
    values = args.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"{name}: given {len(values)} times, expected once")
    return values[0] if values else None


def only(args: MultiDict, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        expected = ", ".join(allowed) if allowed else "none"
        raise BadRequest(f"unknown parameter {unknown[0]!r} (expected: {expected})")


def text(args: MultiDict, name: str) -> str | None:
    return _one(args, name)


def symbol(args: MultiDict, default: str) -> str:
    value = _one(args, "symbol")
    if value is None:
        return default
    if not SYMBOL_PATTERN.match(value):
        raise BadRequest(f"symbol: {value[:40]!r} is not an instrument id like BTC-USDT (upper case, dash separated)")
    return value


def interval(args: MultiDict, default: str = "1m") -> Interval:
    value = _one(args, "interval")
    if value is None:
        value = default
    found = INTERVALS.get(value)
    if found is None:
        raise BadRequest(f"interval: {value[:20]!r} is not one of {', '.join(INTERVALS)}")
    return found


def integer(args: MultiDict, name: str, default: int | None, low: int, high: int, unit: str = "") -> int | None:
    value = _one(args, name)
    if value is None:
        return default
    if not _INT.match(value):
        raise BadRequest(f"{name}: {value[:20]!r} is not a whole number")
    number = int(value)
    if not low <= number <= high:
        raise BadRequest(f"{name}: {number} is out of range {low}..{high}{unit}")
    return number


def time_range(args: MultiDict) -> tuple[int | None, int | None]:
    start = integer(args, "from", None, 0, MAX_EPOCH_S, " (epoch seconds)")
    end = integer(args, "to", None, 0, MAX_EPOCH_S, " (epoch seconds)")
    if start is not None and end is not None and start > end:
        raise BadRequest(f"from ({start}) is after to ({end})")
    return start, end

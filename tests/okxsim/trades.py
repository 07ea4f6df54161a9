"""Trades for the simulated exchange, in OKX's own wire shape (numbers as strings)."""

from __future__ import annotations

import json
import random
from pathlib import Path

# The real recordings live beside the repository (../shared/reference/okx).
REFERENCE_DIR = Path(__file__).resolve().parents[3] / "shared" / "reference" / "okx"
RECORDING_2022 = REFERENCE_DIR / "btc-usdt-trades-2022-05-13.jsonl"
RECORDING_COUNT = REFERENCE_DIR / "gocryptotrader-wsAllTrades.jsonl"


def load_recording(path: Path = RECORDING_2022) -> list[dict]:
    """Every trade item of every push in a recording, in order."""
    if not path.exists():
        raise FileNotFoundError(
            f"recorded OKX messages not found at {path}; they ship in shared/reference/okx beside the repo"
        )
    trades = []
    for line in path.read_text().splitlines():
        if line.strip():
            trades.extend(json.loads(line)["data"])
    return trades


def generate(
    symbol: str,
    n: int,
    first_id: int = 1_000_000,
    start_ms: int = 1_700_000_000_000,
    start_price: float = 30_000.0,
    step_ms: int = 7,
    seed: int = 42,
) -> list[dict]:
    """A deterministic random walk of ``n`` trades with consecutive ids.

    Several trades share a millisecond on purpose (as on the real exchange), so a
    dedup key without the trade id would merge them.
    """
    rng = random.Random(f"{symbol}:{seed}")
    price, ts, out = start_price, start_ms, []
    for i in range(n):
        price = max(0.1, round(price + rng.choice((-1, 1)) * rng.randint(0, 20) * 0.1, 1))
        if rng.random() < 0.6:
            ts += rng.randint(1, step_ms)
        size = round(rng.uniform(0.00001, 0.5), 8)
        out.append(
            {
                "instId": symbol,
                "tradeId": str(first_id + i),
                "px": f"{price:.1f}",
                "sz": f"{size:.8f}".rstrip("0").rstrip("."),
                "side": rng.choice(("buy", "sell")),
                "ts": str(ts),
            }
        )
    return out


def aggregate(fills: list[dict]) -> list[dict]:
    """Group consecutive fills of one side, price and millisecond into one push item,
    as the ``trades`` channel does: size summed, last id, ``count`` fills."""
    pushes: list[dict] = []
    for fill in fills:
        last = pushes[-1] if pushes else None
        if last and all(last[k] == fill[k] for k in ("instId", "side", "px", "ts")):
            last["sz"] = _add_decimal(last["sz"], fill["sz"])
            last["tradeId"] = fill["tradeId"]
            last["count"] = str(int(last["count"]) + 1)
        else:
            pushes.append({**fill, "count": "1"})
    return pushes


def _add_decimal(a: str, b: str) -> str:
    from decimal import Decimal

    return format(Decimal(a) + Decimal(b), "f")

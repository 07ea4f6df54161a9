"""Trades for the simulated exchange, in OKX's own wire shape (numbers as strings)."""

from __future__ import annotations

import json
import math
import random
import time
from decimal import Decimal
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
    return format(Decimal(a) + Decimal(b), "f")


# -- instruments ----------------------------------------------------------------
# Majors with a price level each, busiest first (the order trade_rates keeps at the top).
MAJORS = {
    "BTC": 95_000.0, "ETH": 3_500.0, "SOL": 180.0, "XRP": 2.3, "DOGE": 0.32, "OKB": 50.0, "TON": 5.5,
    "ADA": 0.9, "LTC": 100.0, "TRX": 0.25, "AVAX": 35.0, "LINK": 20.0, "DOT": 7.0, "BCH": 450.0,
    "SHIB": 0.00002, "PEPE": 0.00001, "UNI": 12.0, "NEAR": 5.0, "APT": 9.0, "ARB": 0.8, "OP": 2.0,
    "FIL": 5.0, "ATOM": 6.5, "ETC": 27.0, "SUI": 4.0, "WLD": 2.2, "INJ": 25.0, "AAVE": 300.0,
}
INVERSE_SWAPS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "LTC", "TON", "ADA")


def _pow10(exponent: int) -> str:
    """10**exponent as a plain decimal string ("0.001", "1", "100")."""
    return format(Decimal(1).scaleb(exponent), "f")


def _floor_log10(x: float) -> int:
    return math.floor(math.log10(x))


def instrument_record(inst_id: str, inst_type: str = "SPOT", state: str = "live",
                      price: float | None = None, list_time_ms: int | None = None) -> tuple[dict, float]:
    """An OKX ``public/instruments`` record for ``inst_id`` (all values strings, as OKX
    sends them) and the price level it was sized for. The fields follow from the id
    (``BASE-QUOTE``; ``BASE-QUOTE-SWAP``: linear if QUOTE is USDT/USDC, else inverse;
    ``BASE-QUOTE-YYMMDD``: futures). ``tickSz`` is about 1/100,000 of the price, ``lotSz``
    about a thousandth of a dollar's worth, ``minSz`` about a dollar's worth; a SWAP's
    ``ctVal`` makes one contract worth 100-1,000 quote (inverse: 100 or 10 USD)."""
    parts = inst_id.split("-")
    base = parts[0]
    quote = parts[1] if len(parts) > 1 else "USDT"
    if price is None:
        price = MAJORS.get(base) or 10 ** random.Random(base).uniform(-5, 3)
    now_ms = int(time.time() * 1000)
    if list_time_ms is None:
        list_time_ms = now_ms + 3_600_000 if state == "preopen" else now_ms
    tick = _pow10(max(_floor_log10(price) - 5, -10))
    record = {
        "instType": inst_type, "instId": inst_id, "uly": "", "instFamily": "", "category": "1",
        "baseCcy": "", "quoteCcy": "", "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "",
        "ctType": "", "optType": "", "stk": "", "listTime": str(list_time_ms), "expTime": "", "lever": "",
        "tickSz": tick, "lotSz": "", "minSz": "", "alias": "", "state": state, "ruleType": "normal",
        "maxLmtSz": "", "maxMktSz": "",
    }
    if inst_type in ("SPOT", "MARGIN"):
        # At most a thousandth of a dollar's worth: BTC-USDT's real 0.00000001 (its trades
        # print sizes of 8 decimals, ../shared/reference/okx), and a dollar's worth at least:
        # its real 0.00001.
        lot_exp = min(-math.ceil(math.log10(price)) - 3, 0)
        record.update(baseCcy=base, quoteCcy=quote, lotSz=_pow10(lot_exp),
                      minSz=_pow10(max(lot_exp, round(-math.log10(price)))),
                      maxLmtSz="9999999999", maxMktSz="1000000")
        if inst_type == "MARGIN":
            record["lever"] = "10"
        return record, price
    family = f"{base}-{quote}"
    linear = quote in ("USDT", "USDC")
    record.update(uly=family, instFamily=family, ctMult="1", lever="50" if base in MAJORS else "20",
                  lotSz="0.01" if base in ("BTC", "ETH") else "1", maxLmtSz="100000000", maxMktSz="50000")
    record["minSz"] = record["lotSz"]
    if linear:
        record.update(settleCcy=quote, ctValCcy=base, ctType="linear",
                      ctVal=_pow10(_floor_log10(1000 / price)))
    else:
        record.update(settleCcy=base, ctValCcy=quote, ctType="inverse", ctVal="100" if base == "BTC" else "10")
    if inst_type == "FUTURES":
        record["expTime"] = str(now_ms + 90 * 86_400_000)
        record["alias"] = "quarter"
    elif inst_type == "OPTION":
        record.update(optType="C", stk=str(round(price)), expTime=str(now_ms + 7 * 86_400_000))
    return record, price


def _coin_names(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct coin names: the majors, then made-up 3-5 letter ones."""
    names, seen = list(MAJORS)[:n], set(MAJORS)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    while len(names) < n:
        name = "".join(rng.choice(letters) for _ in range(rng.randint(3, 5)))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def catalogue(n_spot: int = 400, n_swap: int = 200, seed: int = 1) -> list[tuple[dict, float]]:
    """A realistic instrument catalogue: ``n_spot`` SPOT and ``n_swap`` SWAP records (with
    the price level of each), deterministic per ``seed``. SPOT: every coin against USDT,
    the first 40 % also against USDC, the first 10 % against BTC, in coin order; SWAP: the
    inverse ``-USD-SWAP`` of a few majors, then ``-USDT-SWAP`` of the coins in order. About
    3 % are ``suspend`` and 1 % ``preopen``, never among the first 20 coins."""
    if n_spot < 0 or n_swap < 0:
        raise ValueError("counts must be >= 0")
    rng = random.Random(f"catalogue:{seed}")
    coins = _coin_names(max(n_spot, n_swap) + 10, rng)
    prices = {c: MAJORS.get(c) or 10 ** rng.uniform(-5, 3) for c in coins}
    rank = {c: i for i, c in enumerate(coins)}
    usdc, btc = int(len(coins) * 0.4), int(len(coins) * 0.1)
    spot: list[tuple[str, str]] = []
    for i, coin in enumerate(coins):
        spot.append((coin, f"{coin}-USDT"))
        if i < usdc:
            spot.append((coin, f"{coin}-USDC"))
        if 0 < i < btc:
            spot.append((coin, f"{coin}-BTC"))
    spot = spot[:n_spot]
    inverse = [(c, f"{c}-USD-SWAP") for c in INVERSE_SWAPS if c in rank][: n_swap // 10]
    swap = (inverse + [(c, f"{c}-USDT-SWAP") for c in coins])[:n_swap]
    day = 86_400_000
    now_ms = int(time.time() * 1000)
    out = []
    for inst_type, pairs in (("SPOT", spot), ("SWAP", swap)):
        for coin, inst_id in pairs:
            state = "live"
            if rank[coin] >= 20:
                roll = rng.random()
                state = "suspend" if roll < 0.03 else "preopen" if roll < 0.04 else "live"
            quote = inst_id.split("-")[1]
            price = prices[coin] / prices["BTC"] if quote == "BTC" else prices[coin]
            listed = now_ms + rng.randint(1, 48) * 3_600_000 if state == "preopen" else \
                now_ms - rng.randint(30, 2_000) * day
            out.append(instrument_record(inst_id, inst_type, state, price=price, list_time_ms=listed))
    return out


# -- load ----------------------------------------------------------------------
def trade_rates(total_rate: float, symbols: list[str], seed: int = 1, exponent: float = 1.0) -> dict[str, float]:
    """Per-symbol trade rates summing to ``total_rate``, Zipf-like: the symbol of rank k
    gets a share proportional to 1/k**exponent, so a few are busy and a long tail is quiet
    (600 symbols, exponent 1: the busiest ~14 %, the quietest ~0.02 %). Ranks: symbols
    whose base is a major (BTC, ETH, SOL... in ``MAJORS`` order; USDT before other quotes,
    SPOT before SWAP) come first, the rest in a seeded shuffle. Busiest first."""
    if total_rate < 0 or not math.isfinite(total_rate):
        raise ValueError(f"total_rate={total_rate}")
    symbols = list(dict.fromkeys(symbols))
    if not symbols:
        return {}
    order = list(MAJORS)
    quotes = ("USDT", "USDC", "USD", "BTC")

    def major_key(symbol: str):
        parts = symbol.split("-")
        quote = parts[1] if len(parts) > 1 else ""
        return (order.index(parts[0]), symbol.endswith("-SWAP"),
                quotes.index(quote) if quote in quotes else len(quotes), symbol)

    majors = sorted((s for s in symbols if s.split("-")[0] in MAJORS), key=major_key)
    rest = sorted(s for s in symbols if s.split("-")[0] not in MAJORS)
    random.Random(f"rates:{seed}").shuffle(rest)
    ranked = majors + rest
    weights = [1 / (k + 1) ** exponent for k in range(len(ranked))]
    scale = total_rate / sum(weights)
    return {symbol: w * scale for symbol, w in zip(ranked, weights)}

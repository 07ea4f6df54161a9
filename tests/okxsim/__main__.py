"""python -m tests.okxsim: run the simulated exchange, printing live trades at a rate.

For `make up EXCHANGE=sim` (no internet) and for demos: every symbol gets a random walk
stamped with the current time.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time

from tests.okxsim.server import OkxExchange
from tests.okxsim.trades import generate


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.okxsim")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--rate", type=float, default=20.0, help="trades per second per symbol")
    parser.add_argument("--symbols", default="BTC-USDT,ETH-USDT")
    parser.add_argument("--past", type=float, default=600.0,
                        help="seconds of trades already printed at start, served over REST history-trades only "
                             "(what the producer's HISTORY_WINDOW fetches); 0: none")
    parser.add_argument("--control", action="store_true",
                        help="serve /sim/status, /sim/firehose (benchmarks), the faults: /sim/rest, /sim/hide, "
                             "/sim/forget, /sim/clear, /sim/items, and /sim/instruments, /sim/list, /sim/state, "
                             "/sim/delist, /sim/limits, /sim/connections, /sim/market (see OkxExchange)")
    parser.add_argument("--populate", default="",
                        help="N_SPOT,N_SWAP: start with a realistic instrument catalogue (public/instruments; then "
                             "only its live instruments can be subscribed); e.g. 400,200")
    parser.add_argument("--seed", type=int, default=1, help="the catalogue's seed")
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    prices = {"BTC-USDT": 95_000.0, "ETH-USDT": 3_500.0}
    next_id = {s: int(time.time() * 1000) for s in symbols}
    last_px = {s: prices.get(s, 100.0) for s in symbols}
    tick = 0.1
    with OkxExchange(host="127.0.0.1", port=args.port, control=args.control) as exchange:
        if args.populate:
            n_spot, n_swap = (int(x) for x in args.populate.split(","))
            exchange.populate(n_spot, n_swap, args.seed)
        if args.past > 0 and args.rate > 0:
            # A past at the same rate, ending now, printed before anyone could listen.
            n = int(args.past * args.rate)
            now_ms = int(time.time() * 1000)
            for symbol in symbols:
                trades = generate(symbol, n, first_id=next_id[symbol], start_ms=now_ms - int(args.past * 1000),
                                  start_price=last_px[symbol], step_ms=max(1, int(3333 / args.rate)),  # ~1/rate s apart
                                  seed=next_id[symbol])
                next_id[symbol] += n
                last_px[symbol] = float(trades[-1]["px"])
                exchange.emit(trades)
        print(f"simulated OKX on ws://127.0.0.1:{exchange.port}/ws/v5/business, {args.rate}/s per symbol", flush=True)
        carry = 0.0
        while not stop.wait(tick):
            if not symbols or args.rate <= 0:
                continue
            carry += args.rate * tick
            n, carry = int(carry), carry - int(carry)
            if n == 0:
                continue
            now_ms = int(time.time() * 1000)
            batch = []
            for symbol in symbols:
                trades = generate(symbol, n, first_id=next_id[symbol], start_ms=now_ms, start_price=last_px[symbol],
                                  step_ms=1, seed=next_id[symbol])
                next_id[symbol] += n
                last_px[symbol] = float(trades[-1]["px"])
                batch.extend(trades)
            exchange.emit(batch)


if __name__ == "__main__":
    main()

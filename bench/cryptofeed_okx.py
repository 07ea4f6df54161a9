"""cryptofeed's OKX trades feed with its Kafka backend, pointed at the simulated exchange:
the launcher bench/p2_cryptofeed.py runs in cryptofeed's own venv (nothing of this
project is imported here).

cryptofeed is used as published: its OKX feed, its trade parser, its TradeKafka backend
with its defaults (aiokafka, one record per trade, topic `<key>-OKX-<symbol>`). Only the
addresses change, by a subclass (cryptofeed reads them from class attributes; there is no
setting for them): its REST base (it lists instruments at start-up) and its WebSocket,
which goes to the simulator's business endpoint and channel `trades-all`, where the
simulator's firehose prints (cryptofeed's OKX asks for `trades` on the public endpoint:
the same push fields, aggregated; its handler routes any channel containing "trades" to
its trade parser), over plain ws:// like our producer here (cryptofeed refuses anything
but wss:// when it builds a connection, so the subclass swaps the address in after).

python bench/cryptofeed_okx.py --ws ws://127.0.0.1:8443/ws/v5/business --rest http://127.0.0.1:8443 \
    --bootstrap 127.0.0.1:9092 --symbol P2CF-USDT --key trades
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from cryptofeed import FeedHandler
from cryptofeed.backends.kafka import TradeKafka
from cryptofeed.connection import RestEndpoint, WebsocketEndpoint, WSAsyncConn
from cryptofeed.defines import TRADES
from cryptofeed.exchanges import OKX


def simulated_okx(ws_url: str, rest_url: str) -> type[OKX]:
    class SimulatedOKX(OKX):
        websocket_channels = {**OKX.websocket_channels, TRADES: "trades-all"}
        # cryptofeed only accepts wss:// addresses; the simulator speaks plain ws:// (as our
        # producer reads it here): the connection is made for the wss:// form, then given
        # the plain address it opens.
        websocket_endpoints = [WebsocketEndpoint(ws_url.replace("ws://", "wss://", 1), channel_filter=("trades-all",),
                                                 options={"compression": None})]
        rest_endpoints = [RestEndpoint(rest_url, routes=OKX.rest_endpoints[0].routes)]

        def connect(self):
            connections = super().connect()
            for connection, *_ in connections:
                if isinstance(connection, WSAsyncConn):
                    connection.address = ws_url
            return connections

    return SimulatedOKX


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ws", required=True)
    parser.add_argument("--rest", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--key", default="trades")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    feed = simulated_okx(args.ws, args.rest)
    handler = FeedHandler()  # default config: warnings to feedhandler.log in the working directory
    handler.add_feed(feed(symbols=[args.symbol], channels=[TRADES],
                          callbacks={TRADES: TradeKafka(key=args.key, bootstrap_servers=args.bootstrap)}))
    # FeedHandler.run() asks asyncio.get_event_loop() for a loop; under the uvloop policy
    # it installs (uvloop >= 0.22), that raises when none is set yet: set one first.
    asyncio.set_event_loop(asyncio.new_event_loop())
    handler.run()


if __name__ == "__main__":
    main()

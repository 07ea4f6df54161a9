"""All of OKX: hundreds of instruments named by pattern, spread over connections within
OKX's limits, through the whole pipeline; a listing appearing and one delisted mid-run."""

import time

from tests.conftest import TEST_PORTS, get_json, metric, sql, wait_for
from tests.okxsim.trades import trade_rates
from tests.pipeline.test_ingest import producer_env

NEW = "ZZNEW-USDT"


def stored_counts(symbols: list[str], since_ms: int) -> dict[str, tuple[int, int]]:
    rows = sql(f"select symbol, count() n, count_distinct(trade_id) d from trades "
               f"where timestamp >= {since_ms * 1000} and symbol in ({','.join(repr(s) for s in symbols)})")
    return {r["symbol"]: (r["n"], r["d"]) for r in rows}


def readyz() -> tuple[int, list[str]]:
    try:
        status, body = get_json(f"http://127.0.0.1:{TEST_PORTS.producer}/readyz")
    except OSError:  # not listening yet
        return 0, []
    return status, body.get("problems", [])


def test_six_hundred_instruments_by_pattern_exactly_once_within_okx_limits(exchange, topic, services):
    exchange.populate(n_spot=400, n_swap=200, seed=7)
    exchange.set_limits(connect_rate=3, ops_per_hour=480, max_request_bytes=65536)
    live = exchange.live_instruments(("SPOT", "SWAP"))
    assert len(live) > 550
    since_ms = int(time.time() * 1000)
    services.start("consumer", topic)
    producer = services.start("producer", topic, **producer_env(
        exchange, "*-USDT,*-USDC,*-BTC,*-SWAP", OKX_INST_TYPES="SPOT,SWAP", INSTRUMENTS_REFRESH_S="2",
        MAX_SYMBOLS_PER_CONNECTION="100", HISTORY_WINDOW="10m"), wait=False)
    wait_for(lambda: all(exchange.subscribed(s) == 1 for s in live), timeout_s=90,
             message="every live instrument subscribed once")
    info = exchange.connections_info()
    assert len(info) == -(-len(live) // 100) and all(len(c["symbols"]) <= 100 for c in info)
    wait_for(lambda: readyz()[0] == 200, message="the producer ready")

    busy = max(trade_rates(300, live, seed=7).items(), key=lambda kv: kv[1])[0]
    exchange.start_market(trade_rates(300, live, seed=7), seed=7)
    wait_for(lambda: len(exchange.market_printed()) > 100, message="the market printing")

    # A listing appears and trades before the producer's next look at the list: it is
    # followed within the refresh, and its trades from the first are fetched and stored.
    exchange.list_instrument(NEW)
    exchange.market_rate(NEW, 20)
    wait_for(lambda: exchange.subscribed(NEW) == 1, timeout_s=30, message="the new listing subscribed")
    # A busy instrument is delisted: unsubscribed, nothing breaks.
    exchange.delist(busy)
    wait_for(lambda: all(busy not in c["symbols"] for c in exchange.connections_info()), timeout_s=30,
             message="the delisted instrument unsubscribed")
    wait_for(lambda: readyz()[0] == 200, message="still ready after the change")
    wait_for(lambda: len(exchange.market_printed().get(NEW, [])) >= 40, timeout_s=30, message="the listing trading")
    printed = exchange.stop_market()

    symbols = sorted(printed)
    assert NEW in symbols and busy in symbols
    total = sum(len(ids) for ids in printed.values())

    def all_stored():
        got = stored_counts(symbols, since_ms)
        return sum(n for n, _ in got.values()) == total and got

    got = wait_for(all_stored, timeout_s=120, message=f"all {total} printed trades stored")
    assert {s: (len(ids), len(ids)) for s, ids in printed.items()} == got  # exactly once, per symbol
    swap = next(s for s in symbols if s.endswith("-SWAP"))
    assert sql(f"select distinct inst_type from trades where symbol in ('{swap}', '{NEW}') order by inst_type") == [
        {"inst_type": "SPOT"}, {"inst_type": "SWAP"}]
    first_new = min(printed[NEW])
    assert sql(f"select min(trade_id) m from trades where symbol = '{NEW}'")[0]["m"] == first_new
    # No request ever broke a limit: nothing refused, no error event.
    limits = exchange.limits_state()
    assert limits["refused_connections"] == 0 and not any(limits["limit_errors"].values()), limits
    assert metric(TEST_PORTS.producer, "gostream_producer_exchange_errors_total") == 0
    assert producer.popen.poll() is None


def test_an_exact_id_okx_does_not_know_is_said_not_fatal(exchange, topic, services):
    good, bad = "GOODX-USDT", "NOPEX-USDT"
    exchange.unknown_symbols.add(bad)
    services.start("consumer", topic)
    producer = services.start("producer", topic, **producer_env(exchange, f"{good},{bad}"), wait=False)
    wait_for(lambda: any(p.startswith(f"okx: {bad} refused: 60018") for p in readyz()[1]), timeout_s=30,
             message="the unknown id in /readyz")
    exchange.emit([{"instId": good, "tradeId": "7", "px": "1.5", "sz": "2", "side": "buy",
                    "ts": str(int(time.time() * 1000))}])
    wait_for(lambda: sql(f"select count() n from trades where symbol = '{good}'")[0]["n"] == 1,
             message="the known symbol's trade stored")
    assert producer.popen.poll() is None
    log = producer.log_path.read_text()
    assert "okx error event" in log and bad in log

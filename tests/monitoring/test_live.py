"""A real Prometheus scraping the real pipeline: simulated OKX -> producer -> Kafka (with
the JMX exporter agent) -> consumer -> QuestDB, the api and the frontend, every second,
with the shared alerting rules loaded. What it stores must agree with the truth."""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.request

import pytest

from stack import components as c
from stack.process import Process
from tests.conftest import TEST_PORTS, produce, read_topic, spare_port, sql, unique, wait_for
from tests.monitoring.conftest import PrometheusAPI, dashboard_exprs, grafana_to_promql, metric_names, rules, tool
from tests.okxsim import OkxExchange, generate

COMPONENTS = {"producer", "consumer", "api", "frontend", "questdb", "kafka"}
FAST_RECONNECT = {"RECONNECT_INITIAL_DELAY_S": "0.1", "RECONNECT_MIN_DELAY_S": "0.2", "RECONNECT_MAX_DELAY_S": "1"}



@dataclasses.dataclass
class Pipeline:
    prom: PrometheusAPI
    exchange: OkxExchange
    topic: str
    symbol: str
    ports: c.Ports
    next_id: int = 5_000_000

    def trades(self, n: int) -> list[dict]:
        """``n`` consecutive trades stamped now (exchange time)."""
        out = generate(self.symbol, n, first_id=self.next_id, start_ms=int(time.time() * 1000), step_ms=1,
                       seed=self.next_id)
        self.next_id += n
        return out


@pytest.fixture(scope="module")
def pipeline(kafka, questdb, api, stack_dir):
    tool("prometheus")
    from gostream.frontend.app import VENDOR_JS

    if not VENDOR_JS.exists():
        pytest.fail(f"{VENDOR_JS} is missing: run `make frontend-assets` (make test does)")
    # The frontend on a port of its own: tests/frontend may hold TEST_PORTS.frontend.
    ports = dataclasses.replace(TEST_PORTS, frontend=spare_port())
    if c.port_open(ports.prometheus):
        pytest.fail(f"port {ports.prometheus} is taken: stop whatever listens there (an earlier test run?)")
    topic = unique("mon-")
    c.ensure_topics(ports.kafka, {topic: 3, f"{topic}.dlq": 1})
    symbol = unique("M") + "-USDT"
    logs = stack_dir / "logs" / "monitoring"
    started: list[Process] = []
    with OkxExchange(port=0) as exchange:
        try:
            env = c.service_env(ports, KAFKA_TOPIC=topic, KAFKA_DLQ_TOPIC=f"{topic}.dlq",
                                KAFKA_GROUP_ID=f"{topic}-group", LOG_LEVEL="INFO")
            producer_env = {**env, "OKX_WS_URL": exchange.ws_url(), "OKX_REST_URL": exchange.rest_url,
                            "SYMBOLS": symbol, **FAST_RECONNECT}
            specs = [c.prometheus(stack_dir / "monitoring", ports, scrape_interval="1s"), c.consumer(ports, env),
                     c.producer(ports, producer_env), c.frontend(ports, env)]
            for spec in specs:
                started.append(Process(spec, logs).start())
            for process in started:
                process.wait_ready(60)
            yield Pipeline(PrometheusAPI(ports.prometheus), exchange, topic, symbol, ports)
        finally:
            for process in reversed(started):
                process.stop()


def test_every_target_is_up(pipeline):
    wait_for(lambda: (lambda t: set(t) >= COMPONENTS and all(t[n] == "up" for n in COMPONENTS))(pipeline.prom.targets()),
             timeout_s=30, message="every target up in Prometheus")
    for name in COMPONENTS:
        assert pipeline.prom.value(f'up{{component="{name}"}}') == 1.0, name


def test_series_agree_with_the_truth(pipeline):
    prom, exchange, symbol = pipeline.prom, pipeline.exchange, pipeline.symbol
    wait_for(lambda: exchange.subscribed(symbol) == 1, message="the producer subscribed")
    sent = 0
    staleness_while_emitting = []

    def emit(batches: int, size: int = 10) -> None:
        nonlocal sent
        for _ in range(batches):
            exchange.emit(pipeline.trades(size))
            sent += size
            time.sleep(0.25)

    emit(12)  # 3 s of trades
    # A gap: 20 trades the exchange prints but does not push; the producer backfills them.
    exchange.silent = True
    exchange.emit(pipeline.trades(20))
    sent += 20
    exchange.silent = False
    staleness = f'gostream_producer_feed_staleness_seconds{{symbol="{symbol}"}}'
    emitter = threading.Thread(target=emit, args=(12,))
    emitter.start()
    time.sleep(2.5)  # > two scrapes into the second run of trades
    staleness_while_emitting.append(prom.value(staleness))
    # Garbage on the wire and on the topic: counted, never stored.
    exchange.send_raw("this is not json")
    produce(pipeline.topic, [(symbol.encode(), b"not a trade"), (symbol.encode(), b'{"v":1}')])
    emitter.join()
    stopped = time.monotonic()

    wait_for(lambda: sql(f"select count() n from trades where symbol = '{symbol}'")[0]["n"] == sent,
             timeout_s=60, message=f"{sent} trades in QuestDB")
    # Prometheus' view equals what was sent (it scrapes every second).
    wait_for(lambda: prom.value("sum(gostream_consumer_rows_written_total)") == sent, timeout_s=15,
             message=f"rows written == {sent} in Prometheus")
    # The producer sends what is ready together as one record (codec v2): count the records.
    records = len(read_topic(pipeline.topic))
    assert sent // 500 < records - 2 <= sent  # some batching, nothing past one trade per record
    # Each target is scraped on its own clock: give the others a scrape or two to catch up.
    expected = {
        f'sum(gostream_producer_trades_received_total{{symbol="{symbol}"}})': sent - 20,
        f'sum(gostream_producer_trades_backfilled_total{{symbol="{symbol}"}})': 20,
        f'sum(gostream_producer_gaps_detected_total{{symbol="{symbol}"}})': 1,
        "sum(gostream_producer_trades_published_total)": sent,
        'sum(gostream_producer_frames_rejected_total{reason="not-json"})': 1,
        "sum(gostream_consumer_dlq_records_total)": 2,
        "sum(gostream_consumer_records_consumed_total)": records,
        "sum(gostream_consumer_exchange_to_stored_seconds_count)": sent,
        "gostream_producer_ws_connected": 1,
    }
    wait_for(lambda: {expr: prom.value(expr) for expr in expected} == expected, timeout_s=15,
             message=f"Prometheus agreeing with what was sent: {expected}")
    # Kafka's own count of records into the topic, through the JMX exporter.
    kafka_in = f'sum(kafka_server_brokertopicmetrics_messagesinpersec_total{{topic="{pipeline.topic}"}})'
    wait_for(lambda: prom.value(kafka_in) == records, timeout_s=15, message=f"Kafka counted {records} records in")

    # Staleness: small while the exchange emits, then it keeps growing.
    assert staleness_while_emitting[0] is not None and staleness_while_emitting[0] < 3, staleness_while_emitting
    wait_for(lambda: (prom.value(staleness) or 0) > 4, timeout_s=15, message="staleness above 4 s once the feed stops")
    first = prom.value(staleness)
    time.sleep(2.5)
    later = prom.value(staleness)
    assert later > first + 1, (first, later)
    assert later >= time.monotonic() - stopped - 2  # close to the time since the last trade


def test_hooks_in_producer_and_consumer(pipeline):
    """Series that need a call in the producer and consumer code (see metrics.py there)."""
    prom = pipeline.prom
    wait_for(lambda: prom.value("sum(gostream_consumer_rows_written_total)"), message="trades flowed (previous test)")
    published = prom.value("sum(gostream_producer_exchange_to_published_seconds_count)")
    assert published == prom.value("sum(gostream_producer_trades_published_total)"), (
        "gostream_producer_exchange_to_published_seconds: call metrics.observe_published(trade.ts_ms) when Kafka acks")
    lag = prom.query(f'gostream_consumer_lag_records{{topic="{pipeline.topic}"}}')
    assert lag, "gostream_consumer_lag_records: call metrics.update_lag(consumer) after each poll"
    assert sum(float(s["value"][1]) for s in lag) == 0  # everything read


def test_api_and_frontend_series(pipeline):
    prom, symbol = pipeline.prom, pipeline.symbol
    before = prom.value('sum(gostream_api_requests_total{endpoint="/candles", status="200"})') or 0
    for url in (f"http://127.0.0.1:{pipeline.ports.api}/candles?symbol={symbol}",
                f"http://127.0.0.1:{pipeline.ports.frontend}/api/candles?symbol={symbol}",
                f"http://127.0.0.1:{pipeline.ports.frontend}/"):
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{pipeline.ports.api}/candles?interval=7m", timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
    wait_for(lambda: prom.value('sum(gostream_api_requests_total{endpoint="/candles", status="200"})') == before + 2,
             timeout_s=15, message="two /candles requests counted (direct and proxied)")
    assert prom.value('sum(gostream_api_requests_total{endpoint="/candles", status="400"})') >= 1
    # The frontend is a target of its own, scraped on its own schedule.
    wait_for(lambda: prom.value('sum(gostream_frontend_requests_total{route="api", status="200"})') == 1
             and prom.value('sum(gostream_frontend_requests_total{route="page", status="200"})') == 1,
             timeout_s=15, message="the proxied request and the page counted by the frontend")
    assert prom.value("sum(gostream_api_db_query_duration_seconds_count)") > 0
    assert prom.value('sum(gostream_api_request_duration_seconds_count{endpoint="/candles"})') >= 3
    assert prom.value("sum(gostream_frontend_proxy_errors_total)") == 0


def test_rules_are_loaded_and_evaluate(pipeline):
    groups = pipeline.prom.get("/api/v1/rules")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {rule.get("alert") or rule.get("record") for rule in rules()}
    wait_for(lambda: all(r["health"] == "ok" for g in pipeline.prom.get("/api/v1/rules")["groups"] for r in g["rules"]),
             timeout_s=10, message="every rule evaluated without error")


def test_dashboard_and_alerts_use_only_live_metric_names(pipeline):
    """Every metric name the Grafana dashboard and the alerting rules read is a series the
    live targets export (services' /metrics, QuestDB's, the brokers' JMX exporter), and
    every dashboard query runs."""
    wait_for(lambda: pipeline.prom.value("sum(gostream_consumer_dlq_records_total)"), message="data (previous tests)")
    wait_for(lambda: pipeline.prom.value("sum(gostream_frontend_requests_total)"), timeout_s=15,
             message="the frontend's request series scraped (previous test)")
    live = pipeline.prom.names()
    used = {}
    for expr in dashboard_exprs():
        for name in metric_names(expr):
            used.setdefault(name, f"dashboard: {expr}")
    for rule in rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, f"rule {rule.get('alert')}: {rule['expr']}")
    missing = {name: where for name, where in used.items() if name not in live}
    assert not missing, "metric names no target exports:\n" + "\n".join(f"  {n} ({w})" for n, w in sorted(missing.items()))
    for expr in dashboard_exprs():
        pipeline.prom.query(grafana_to_promql(expr))  # raises on a PromQL error

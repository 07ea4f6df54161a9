"""Credentials end to end, against a QuestDB started with them (as the chart's
questdb.auth.httpBasicAuth starts it): the consumer's DDL and ILP writes and the producer's
/exec queries carry the admin's, the api reads as the read-only user."""

from __future__ import annotations

import base64
import dataclasses
import time
import urllib.error
import urllib.request

import pytest
from questdb import QuestDBError
from sqlalchemy.exc import DBAPIError

from gostream.api.db import Database, make_engine
from gostream.api.settings import ApiSettings
from gostream.common.schema import SchemaError, ensure_schema, query
from gostream.common.settings import QuestDBSettings, load
from gostream.common.trade import Trade
from gostream.consumer.sink import QuestDBSink, sender_conf
from stack import components as c
from tests.conftest import TEST_PORTS, _start, wait_for

PORTS = TEST_PORTS.shifted(700)  # a second QuestDB beside the suite's
ADMIN, ADMIN_PASSWORD = "admin", "s3cret;with@odd:chars"
READER, READER_PASSWORD = "gostream_ro", "r3ad-only"


def _answers_with_credentials() -> bool:
    try:
        return query(settings(QUESTDB_HTTP_AUTH="true").questdb_http_url, "SELECT 1 x", timeout_s=2) == [{"x": 1}]
    except (SchemaError, OSError):
        return False


@pytest.fixture(scope="module")
def questdb_with_auth(stack_dir):
    c.ensure_jars()
    spec = c.questdb(stack_dir / "auth", PORTS)
    spec = dataclasses.replace(
        spec, name="questdb-auth",
        env={**spec.env, "QDB_HTTP_USER": ADMIN, "QDB_HTTP_PASSWORD": ADMIN_PASSWORD,
             "QDB_PG_USER": ADMIN, "QDB_PG_PASSWORD": ADMIN_PASSWORD,
             "QDB_PG_READONLY_USER_ENABLED": "true", "QDB_PG_READONLY_USER": READER,
             "QDB_PG_READONLY_PASSWORD": READER_PASSWORD},
        # Every HTTP port answers 401 without credentials: ready once /exec answers with them.
        ready=_answers_with_credentials)
    process = _start(spec, PORTS.questdb_http, stack_dir)
    try:
        yield process.wait_ready(120)
    finally:
        process.stop()


def trade(trade_id: int) -> Trade:
    now_ms = int(time.time() * 1000)
    return Trade("AUTH-USDT", trade_id, 2.5, 1.0, "buy", now_ms, now_ms * 1000)


def settings(**env: str) -> QuestDBSettings:
    return load(QuestDBSettings, {"QUESTDB_HOST": "127.0.0.1", "QUESTDB_HTTP_PORT": str(PORTS.questdb_http),
                                  "QUESTDB_USER": ADMIN, "QUESTDB_PASSWORD": ADMIN_PASSWORD, **env})


@pytest.mark.parametrize("path", ["/status", "/metrics"])
def test_the_health_port_asks_for_the_credentials_too(questdb_with_auth, path):
    """Why the chart probes QuestDB by TCP when httpBasicAuth is on (/status answers 401
    without the credentials, and a kubelet probe cannot take them from a Secret), and why its
    ServiceMonitor scrapes /metrics with the admin's basic auth (tests/charts/test_monitoring.py)."""
    url = f"http://127.0.0.1:{PORTS.questdb_health}{path}"
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(url, timeout=5)
    token = base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_without_credentials_questdb_refuses(questdb_with_auth):
    with pytest.raises(SchemaError, match="401|nauthori"):
        ensure_schema(settings().questdb_http_url)


def test_the_consumer_and_producer_write_and_query_with_the_admin_credentials(questdb_with_auth):
    conf = settings(QUESTDB_HTTP_AUTH="true")
    assert ADMIN_PASSWORD not in conf.questdb_http_url.split("@")[-1]
    ensure_schema(conf.questdb_http_url, trades_ttl="0", candles_ttl="0")
    sink = QuestDBSink(sender_conf("127.0.0.1", PORTS.questdb_http, 5.0, ADMIN, ADMIN_PASSWORD))
    try:
        sink.add(trade(1))
        sink.flush()
    finally:
        sink.close()
    # The producer's audit and instrument registry read through the same /exec.
    wait_for(lambda: query(conf.questdb_http_url, "SELECT count() n FROM trades WHERE symbol = 'AUTH-USDT'")[0]["n"]
             == 1, message="the trade written with credentials, read back with them")


def test_ilp_without_credentials_is_refused(questdb_with_auth):
    ensure_schema(settings(QUESTDB_HTTP_AUTH="true").questdb_http_url)
    sink = QuestDBSink(sender_conf("127.0.0.1", PORTS.questdb_http, 0.5))
    try:
        sink.add(trade(2))
        with pytest.raises(QuestDBError, match="401|nauthori"):
            sink.flush()
    finally:
        sink.close()


def test_the_api_reads_as_the_read_only_user_and_cannot_write(questdb_with_auth):
    ensure_schema(settings(QUESTDB_HTTP_AUTH="true").questdb_http_url)
    api = load(ApiSettings, {"QUESTDB_HOST": "127.0.0.1", "QUESTDB_PG_PORT": str(PORTS.questdb_pg),
                             "QUESTDB_USER": READER, "QUESTDB_PASSWORD": READER_PASSWORD})
    engine = make_engine(api)
    try:
        db = Database(engine)
        assert db.query("SELECT count() FROM trades")[0][0] >= 0
        # Database turns every failure into "unavailable"; the driver says what QuestDB said.
        with engine.connect() as connection, pytest.raises(DBAPIError, match="(?i)read.?only|permission|denied"):
            connection.exec_driver_sql("INSERT INTO trades (symbol, trade_id, timestamp) VALUES ('RO-USDT', 1, now())")
    finally:
        engine.dispose()

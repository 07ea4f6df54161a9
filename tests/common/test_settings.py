from dataclasses import dataclass

import pytest

from gostream.common.settings import SettingsError, load
from gostream.consumer.settings import ConsumerSettings
from gostream.producer.settings import ProducerSettings


@dataclass(frozen=True)
class Example:
    name: str = "x"
    port: int = 1
    ratio: float = 0.5
    on: bool = False
    items: tuple[str, ...] = ("a",)


def test_defaults_when_unset_or_blank():
    assert load(Example, {}) == Example()
    assert load(Example, {"PORT": "  "}) == Example()


def test_values_are_parsed_by_type():
    got = load(Example, {"NAME": " y ", "PORT": "8080", "RATIO": "0.25", "ON": "yes", "ITEMS": "BTC-USDT, ETH-USDT,"})
    assert got == Example("y", 8080, 0.25, True, ("BTC-USDT", "ETH-USDT"))


@pytest.mark.parametrize("env, variable", [({"PORT": "80a"}, "PORT"), ({"ON": "maybe"}, "ON"), ({"ITEMS": ","}, "ITEMS")])
def test_bad_values_name_the_variable(env, variable):
    with pytest.raises(SettingsError, match=variable):
        load(Example, env)


def test_service_defaults_match_the_documented_interface():
    producer = load(ProducerSettings, {})
    assert producer.symbols == ("BTC-USDT",)
    assert producer.okx_channel == "trades-all"
    assert producer.okx_ws_url == "wss://ws.okx.com:8443/ws/v5/business"
    assert producer.kafka_topic == "trades" and producer.kafka_dlq_topic == "trades.dlq"
    consumer = load(ConsumerSettings, {})
    assert (consumer.questdb_http_port, consumer.questdb_pg_port) == (9000, 8812)
    assert consumer.kafka_group_id == "gostream-consumer"


@pytest.mark.parametrize(
    "env, match",
    [
        ({"OKX_CHANNEL": "books"}, "OKX_CHANNEL"),
        ({"OKX_WS_URL": "https://www.okx.com"}, "OKX_WS_URL"),
        ({"PING_INTERVAL_S": "30"}, "PING_INTERVAL_S"),
        ({"BUFFER_MAX_TRADES": "0"}, "BUFFER_MAX_TRADES"),
    ],
)
def test_producer_refuses_unusable_settings(env, match):
    with pytest.raises(SettingsError, match=match):
        load(ProducerSettings, env)


def test_consumer_refuses_unusable_settings():
    with pytest.raises(SettingsError, match="BATCH_MAX_RECORDS"):
        load(ConsumerSettings, {"BATCH_MAX_RECORDS": "-5"})


@pytest.mark.parametrize("env, match", [({"TRADES_TTL": "36h"}, "TRADES_TTL.*whole days"),
                                        ({"CANDLES_TTL": "forever"}, "CANDLES_TTL.*not a TTL")])
def test_consumer_refuses_a_retention_questdb_would_refuse(env, match):
    with pytest.raises(SettingsError, match=match):
        load(ConsumerSettings, env)
    assert load(ConsumerSettings, {"TRADES_TTL": "90d", "CANDLES_TTL": "2y"}).trades_ttl == "90d"

import re
from dataclasses import dataclass

import pytest

from gostream.common.settings import KafkaSettings, SettingsError, kafka_client_config, load
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


@pytest.mark.parametrize("variable", ["BATCH_MAX_RECORDS", "KAFKA_FETCH_MIN_BYTES"])
def test_consumer_refuses_unusable_settings(variable):
    with pytest.raises(SettingsError, match=variable):
        load(ConsumerSettings, {variable: "-5"})
    with pytest.raises(SettingsError, match=variable):
        load(ConsumerSettings, {variable: "0"})


@pytest.mark.parametrize("env, match", [({"TRADES_TTL": "36h"}, "TRADES_TTL.*whole days"),
                                        ({"CANDLES_TTL": "forever"}, "CANDLES_TTL.*not a TTL")])
def test_consumer_refuses_a_retention_questdb_would_refuse(env, match):
    with pytest.raises(SettingsError, match=match):
        load(ConsumerSettings, env)
    assert load(ConsumerSettings, {"TRADES_TTL": "90d", "CANDLES_TTL": "2y"}).trades_ttl == "90d"


# -- Kafka security ---------------------------------------------------------------
@pytest.mark.parametrize("service", [ProducerSettings, ConsumerSettings, KafkaSettings])
@pytest.mark.parametrize("env, match", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS': expected one of PLAINTEXT, SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"}, "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_PASSWORD": "p"}, "needs KAFKA_SASL_USERNAME"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u",
      "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM='GSSAPI': expected one of SCRAM-SHA-512"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.crt"}, "KAFKA_SSL_CAFILE='/nonexistent/ca.crt': no such file"),
    ({"KAFKA_SSL_CAFILE": __file__}, "KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS"),
])
def test_unusable_kafka_security_stops_every_service_at_start(service, env, match):
    with pytest.raises(SettingsError, match=re.escape(match)):
        load(service, env)


def test_kafka_client_config_per_protocol(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("PEM")
    sasl = {"KAFKA_SASL_USERNAME": "gostream-producer", "KAFKA_SASL_PASSWORD": "pw"}
    plain = kafka_client_config(load(KafkaSettings, {"KAFKA_BOOTSTRAP_SERVERS": "a:9092, b:9092"}))
    assert plain == {"bootstrap_servers": ["a:9092", "b:9092"], "security_protocol": "PLAINTEXT"}
    tls = kafka_client_config(load(KafkaSettings, {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(ca)}))
    assert (tls["ssl_cafile"], tls["ssl_check_hostname"], "sasl_mechanism" in tls) == (str(ca), True, False)
    system_cas = kafka_client_config(load(KafkaSettings, {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **sasl}))
    assert "ssl_cafile" not in system_cas  # kafka-python then loads the system's CAs
    assert (system_cas["sasl_mechanism"], system_cas["sasl_plain_username"], system_cas["sasl_plain_password"]) == \
        ("SCRAM-SHA-512", "gostream-producer", "pw")
    sasl_plain = kafka_client_config(load(KafkaSettings, {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                                          "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", **sasl}))
    assert sasl_plain["sasl_mechanism"] == "SCRAM-SHA-256" and "ssl_check_hostname" not in sasl_plain


def test_the_passwords_stay_out_of_the_settings_repr():
    settings = load(ConsumerSettings, {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u",
                                       "KAFKA_SASL_PASSWORD": "hunter2-secret", "QUESTDB_PASSWORD": "quest-secret"})
    assert "hunter2-secret" not in repr(settings) and "u" == settings.kafka_sasl_username
    assert "quest-secret" not in repr(settings) and settings.questdb_password == "quest-secret"

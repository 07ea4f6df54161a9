"""Kafka with TLS, SCRAM-SHA-512 and ACLs end to end, against a broker started that way (a
SASL_SSL listener only, its users created when the storage is formatted, the StandardAuthorizer):

- the chart's KafkaUser ACLs (rendered with helm) applied to the broker are enough for the real
  producer and consumer services to move trades into QuestDB, and tight: each user can do
  what its service needs and is refused the rest;
- a wrong password or an unknown CA is refused with a clear error in the service's log while
  the service stays up and says it is not ready (no crash loop), the password in no log line
  and not in /readyz.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, KafkaAdminClient,
                         ResourcePattern, ResourcePatternFilter, ResourceType)
from kafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError

from gostream.common.trade import Trade, encode_batch
from stack import components as c
from stack import tls
from tests.charts import chartlib
from tests.conftest import TEST_PORTS, _start, get_json, sql, unique, wait_for
from tests.pipeline.test_ingest import producer_env
from tests.okxsim import generate

PORTS = TEST_PORTS.shifted(800)  # a second broker beside the suite's
BOOTSTRAP = f"127.0.0.1:{PORTS.kafka}"
# The chart's names with its default values and release name "gostream".
PRODUCER, CONSUMER = f"{chartlib.RELEASE}-producer", f"{chartlib.RELEASE}-consumer"
TOPIC, DLQ, GROUP = "trades", "trades.dlq", "gostream-consumer"
USERS = {"admin": "admin-Secret-1", PRODUCER: "producer-Secret-2", CONSUMER: "consumer-Secret-3"}


@pytest.fixture(scope="module")
def secure_kafka(stack_dir) -> c.KafkaSecurity:
    c.ensure_jars()
    certs = stack_dir / "kafka-tls"
    security = c.KafkaSecurity(tls.make_server_cert(certs, tls.make_ca(certs, "kafka"), ["127.0.0.1", "localhost"]),
                               USERS)
    spec = dataclasses.replace(c.kafka(stack_dir / "secure", PORTS, security=security), name="kafka-secure")
    process = _start(spec, PORTS.kafka, stack_dir)
    try:
        process.wait_ready(120)
        c.ensure_topics(PORTS.kafka, {TOPIC: 3, DLQ: 1}, **security.client())
        yield security
    finally:
        process.stop()


# -- the chart's ACLs ----------------------------------------------------------------------
_RESOURCE = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "cluster": ResourceType.CLUSTER,
             "transactionalId": ResourceType.TRANSACTIONAL_ID}
_PATTERN = {"literal": ACLResourcePatternType.LITERAL, "prefix": ACLResourcePatternType.PREFIXED}


def _operation(name: str) -> ACLOperation:
    """Strimzi's spelling (IdempotentWrite) -> kafka-python's (IDEMPOTENT_WRITE)."""
    return ACLOperation["".join(f"_{ch}" if ch.isupper() else ch for ch in name).lstrip("_").upper()]


def acls_of(user: dict) -> list[ACL]:
    """A rendered KafkaUser's ACLs as the User Operator would create them."""
    principal = f"User:{user['spec'].get('userName') or user['metadata']['name']}"
    acls = []
    for rule in user["spec"]["authorization"]["acls"]:
        resource = rule["resource"]
        pattern = ResourcePattern(_RESOURCE[resource["type"]], resource.get("name", "kafka-cluster"),
                                  _PATTERN[resource.get("patternType", "literal")])
        permission = ACLPermissionType.ALLOW if rule.get("type", "allow") == "allow" else ACLPermissionType.DENY
        acls += [ACL(principal, rule.get("host", "*"), _operation(op), permission, pattern) for op in rule["operations"]]
    return acls


@pytest.fixture(scope="module")
def chart_users(secure_kafka) -> dict[str, dict]:
    """The chart's KafkaUsers (default values), their ACLs applied to the broker."""
    docs = chartlib.helm().template()
    users = {doc["metadata"]["name"]: doc for doc in chartlib.kind_of(docs, "KafkaUser")}
    assert set(users) == {PRODUCER, CONSUMER}
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, **secure_kafka.client())
    try:
        everything = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                               ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
        admin.delete_acls([everything])
        for user in users.values():
            result = admin.create_acls(acls_of(user))
            assert not result["failed"], result["failed"]
    finally:
        admin.close()
    return users


def client(security: c.KafkaSecurity, user: str, **extra) -> dict:
    return {"bootstrap_servers": BOOTSTRAP, **security.client(user), "bootstrap_timeout_ms": 10_000, **extra}


def record(symbol: str, trade_id: int) -> bytes:
    now_ms = int(time.time() * 1000)
    return encode_batch([Trade(symbol, trade_id, 1.5, 2.0, "buy", now_ms, now_ms * 1000)])


def send(security: c.KafkaSecurity, user: str, topic: str) -> None:
    """One record to ``topic`` as ``user``, acknowledged or raising the broker's refusal."""
    producer = KafkaProducer(**client(security, user, max_block_ms=10_000, request_timeout_ms=10_000, delivery_timeout_ms=20_000))
    try:
        producer.send(topic, key=b"ACL-USDT", value=record("ACL-USDT", 1)).get(timeout=30)
    finally:
        producer.close(timeout=5)


def read(security: c.KafkaSecurity, user: str, topic: str, group: str | None = None) -> int:
    """Records read from ``topic`` as ``user`` (in ``group``, committing), or the refusal."""
    consumer = KafkaConsumer(**client(security, user, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"))
    try:
        partitions = [TopicPartition(topic, p) for p in range(3 if topic == TOPIC else 1)]
        if group:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 30
            got = 0
            while not got and time.monotonic() < deadline:
                got = sum(len(batch) for batch in consumer.poll(timeout_ms=500).values())
            consumer.commit()
            return got
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        return sum(len(batch) for batch in consumer.poll(timeout_ms=5000).values())
    finally:
        consumer.close(autocommit=False)


# -- the services with the chart's users ---------------------------------------------------------
def secure_env(security: c.KafkaSecurity, user: str, password: str | None = None,
               cafile: str | None = None) -> dict[str, str]:
    """What the chart gives the service's pod."""
    return {"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SSL_CAFILE": cafile or str(security.cert.ca), "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user, "KAFKA_SASL_PASSWORD": USERS[user] if password is None else password}


def test_the_services_move_trades_with_the_charts_users_and_acls(secure_kafka, chart_users, services, exchange):
    symbol = unique("SEC") + "-USDT"
    # The chart's names: the topics, the group the consumer user may read with.
    consumer = services.start("consumer", TOPIC, KAFKA_GROUP_ID=GROUP, **secure_env(secure_kafka, CONSUMER))
    producer = services.start("producer", TOPIC, **producer_env(exchange, symbol), **secure_env(secure_kafka, PRODUCER))
    trades = generate(symbol, 50)
    exchange.emit(trades)
    wait_for(lambda: sql(f"select count() n from trades where symbol = '{symbol}'")[0]["n"] == len(trades), 60,
             message="every trade through SASL_SSL Kafka into QuestDB")
    for process in (producer, consumer):
        assert USERS[process.spec.env["KAFKA_SASL_USERNAME"]] not in process.log_path.read_text()


def test_a_wrong_password_is_refused_clearly_and_the_service_stays_up_not_ready(secure_kafka, services, exchange):
    wrong = "not-the-Password-42"
    producer = services.start("producer", TOPIC, wait=False, **producer_env(exchange, unique("PW") + "-USDT"),
                              **secure_env(secure_kafka, PRODUCER, password=wrong))
    port = TEST_PORTS.producer
    wait_for(lambda: "invalid credentials" in producer.log_path.read_text(), 60,
             message="the broker's refusal in the producer's log")
    def not_ready() -> dict | None:
        status, body = get_json(f"http://127.0.0.1:{port}/readyz")
        return body if status == 503 and "kafka: not connected" in json.dumps(body) else None

    body = wait_for(not_ready, 60, message="/readyz: not ready, Kafka not connected")
    assert producer.alive(), "a refused password must not crash the service (the pod would crash-loop)"
    log = producer.log_path.read_text()
    assert "SaslAuthenticationFailedError" in log and "Traceback" not in log
    assert wrong not in log and wrong not in json.dumps(body)


def test_an_unknown_ca_is_refused_clearly_and_the_service_stays_up_not_ready(secure_kafka, services, stack_dir):
    other_ca = tls.make_ca(stack_dir / "other-ca", "other").cert
    consumer = services.start("consumer", unique("ca-"), wait=False, KAFKA_GROUP_ID=GROUP,
                              **secure_env(secure_kafka, CONSUMER, cafile=str(other_ca)))
    wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in consumer.log_path.read_text(), 60,
             message="the failed certificate check in the consumer's log")
    def not_ready() -> dict | None:
        status, body = get_json(f"http://127.0.0.1:{TEST_PORTS.consumer}/readyz")
        return body if status == 503 and "connecting to Kafka (last error: " in json.dumps(body) else None

    wait_for(not_ready, 60, message="/readyz: not ready, connecting to Kafka, with the last error")
    log = consumer.log_path.read_text()
    assert consumer.alive() and "Traceback" not in log and USERS[CONSUMER] not in log


# -- the ACLs are tight --------------------------------------------------------------------------
def test_the_producer_user_writes_trades_and_nothing_else(secure_kafka, chart_users):
    send(secure_kafka, PRODUCER, TOPIC)
    with pytest.raises(TopicAuthorizationFailedError):
        send(secure_kafka, PRODUCER, DLQ)
    with pytest.raises(TopicAuthorizationFailedError):
        read(secure_kafka, PRODUCER, TOPIC)
    with pytest.raises((GroupAuthorizationFailedError, TopicAuthorizationFailedError)):
        read(secure_kafka, PRODUCER, TOPIC, group=GROUP)


def test_the_consumer_user_reads_trades_with_its_group_writes_the_dlq_and_cannot_write_trades(secure_kafka,
                                                                                               chart_users):
    send(secure_kafka, PRODUCER, TOPIC)
    assert read(secure_kafka, CONSUMER, TOPIC, group=GROUP) >= 1
    send(secure_kafka, CONSUMER, DLQ)
    with pytest.raises(TopicAuthorizationFailedError):
        send(secure_kafka, CONSUMER, TOPIC)
    with pytest.raises(GroupAuthorizationFailedError):
        read(secure_kafka, CONSUMER, TOPIC, group="another-group")


def test_neither_user_can_administer_the_cluster(secure_kafka, chart_users):
    from kafka.admin import NewTopic

    for user in (PRODUCER, CONSUMER):
        admin = KafkaAdminClient(**client(secure_kafka, user))
        try:
            with pytest.raises(KafkaError):
                admin.create_topics([NewTopic(unique("nope-"), 1, 1)])
            with pytest.raises(KafkaError):
                admin.delete_topics([TOPIC])
        finally:
            admin.close()
    # ... while the admin (the super user) can: the refusals above are the ACLs, not the broker.
    admin = KafkaAdminClient(**client(secure_kafka, "admin"))
    try:
        assert TOPIC in admin.list_topics()
    finally:
        admin.close()

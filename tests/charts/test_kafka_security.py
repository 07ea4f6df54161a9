"""The chart's Kafka security: Strimzi's TLS + SCRAM-SHA-512 listener, authorization and a
KafkaUser per service wired into its pod (on by default); the plaintext listener when asked
for; an external Kafka's protocol, credentials Secret and CA. That the rendered ACLs are enough
and tight is proved on a real broker by tests/common/test_kafka_security.py."""

from __future__ import annotations

import pytest

from tests.charts import chartlib
from tests.charts.chartlib import RELEASE, Endpoint, flow_allowed
from tests.charts.test_policy import KAFKA_BROKER, _pods

PIPELINE = ("producer", "consumer")


def container(docs, svc: str) -> tuple[dict, dict]:
    """The service's container and its pod spec."""
    spec = chartlib.by_name(docs, "Deployment", f"{RELEASE}-{svc}")["spec"]["template"]["spec"]
    return spec["containers"][0], spec


def settings(docs, svc: str) -> dict:
    """The service's environment: its ConfigMap plus the container's own entries."""
    own = {e["name"]: e for e in container(docs, svc)[0].get("env", [])}
    return {**chartlib.by_name(docs, "ConfigMap", f"{RELEASE}-{svc}")["data"], **own}


def ca_file(docs, svc: str) -> tuple[dict, str]:
    """The volume the service's KAFKA_SSL_CAFILE is read from, and the key it holds."""
    main, spec = container(docs, svc)
    path = settings(docs, svc)["KAFKA_SSL_CAFILE"]
    mount = next(m for m in main["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    source = volume.get("secret") or volume["configMap"]
    item = next(i for i in source["items"] if i["path"] == path.removeprefix(mount["mountPath"] + "/"))
    return volume, item["key"]


def test_strimzi_clients_authenticate_over_tls_by_default(render):
    docs = render("defaults")
    kafka = chartlib.by_name(docs, "Kafka", RELEASE)["spec"]
    assert [(l["port"], l["tls"], l.get("authentication")) for l in kafka["kafka"]["listeners"]] == \
        [(9093, True, {"type": "scram-sha-512"})], "no plaintext listener unless asked for"
    assert kafka["kafka"]["authorization"] == {"type": "simple"}
    assert "userOperator" in kafka["entityOperator"], "the KafkaUsers need the User Operator"
    users = {u["metadata"]["name"]: u for u in chartlib.kind_of(docs, "KafkaUser")}
    assert set(users) == {f"{RELEASE}-{svc}" for svc in PIPELINE}
    for svc in PIPELINE:
        user = users[f"{RELEASE}-{svc}"]
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == RELEASE
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        env = settings(docs, svc)
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"{RELEASE}-kafka-bootstrap:9093"
        assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"]) == ("SASL_SSL", "SCRAM-SHA-512")
        assert env["KAFKA_SASL_USERNAME"] == user["metadata"]["name"]
        # The Secret the User Operator writes for the user, and the cluster CA the operator keeps.
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": user["metadata"]["name"], "key": "password"}
        volume, key = ca_file(docs, svc)
        assert (volume["secret"]["secretName"], key) == (f"{RELEASE}-cluster-ca-cert", "ca.crt")
    for svc in ("api", "frontend"):
        assert not {k for k in settings(docs, svc) if k.startswith("KAFKA_")}


def test_the_acls_follow_the_topic_and_group_names(helm):
    docs = helm.template(sets=["kafka.topics.trades.name=ticks", "kafka.topics.dlq.name=ticks.bad",
                               "kafka.consumerGroup=ingest"])
    resources = {u["metadata"]["name"]: {(a["resource"]["type"], a["resource"]["name"]) for a in u["spec"]["authorization"]["acls"]}
                 for u in chartlib.kind_of(docs, "KafkaUser")}
    assert resources == {f"{RELEASE}-producer": {("topic", "ticks")},
                         f"{RELEASE}-consumer": {("topic", "ticks"), ("group", "ingest"), ("topic", "ticks.bad")}}


def test_strimzi_without_security_is_plaintext_on_9092(helm):
    docs = helm.template(sets=["kafka.strimzi.security.enabled=false"])
    kafka = chartlib.by_name(docs, "Kafka", RELEASE)["spec"]
    assert [(l["port"], l["tls"], "authentication" in l) for l in kafka["kafka"]["listeners"]] == [(9092, False, False)]
    assert "authorization" not in kafka["kafka"] and "userOperator" not in kafka["entityOperator"]
    assert not chartlib.kind_of(docs, "KafkaUser")
    policies = chartlib.kind_of(docs, "NetworkPolicy")
    p = _pods(docs)
    for svc in PIPELINE:
        env = settings(docs, svc)
        assert env["KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT" and env["KAFKA_BOOTSTRAP_SERVERS"].endswith(":9092")
        assert not {"KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"} & set(env)
        assert not any(v["name"] == "kafka-ca" for v in container(docs, svc)[1]["volumes"])
        assert flow_allowed(policies, p[svc], KAFKA_BROKER, 9092)
        assert not flow_allowed(policies, p[svc], KAFKA_BROKER, 9093)


def test_external_kafka_over_sasl_ssl(render):
    docs = render("external-kafka-sasl")
    policies = chartlib.kind_of(docs, "NetworkPolicy")
    p = _pods(docs)
    broker = Endpoint.external("10.20.30.40")
    for svc in PIPELINE:
        env = settings(docs, svc)
        assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"]) == ("SASL_SSL", "SCRAM-SHA-512")
        assert env["KAFKA_SASL_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "kafka-gostream", "key": "user"}
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "kafka-gostream", "key": "pass"}
        volume, key = ca_file(docs, svc)
        assert (volume["configMap"]["name"], key) == ("kafka-ca", "ca.pem")
        assert flow_allowed(policies, p[svc], broker, 9094) and not flow_allowed(policies, p[svc], broker, 9092)
    assert not flow_allowed(policies, p["api"], broker, 9094)


def test_external_kafka_defaults_to_plaintext(render):
    for svc in PIPELINE:
        env = settings(render("external-kafka"), svc)
        assert env["KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
        assert not {"KAFKA_SASL_MECHANISM", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"} & set(env)


def test_external_tls_with_a_ca_secret_and_no_sasl(helm):
    docs = helm.template(chartlib.CHART / "ci" / "external-kafka-values.yaml",
                         sets=["kafka.externalSecurity.protocol=SSL", "kafka.externalSecurity.caSecret=corp-ca"])
    for svc in PIPELINE:
        env = settings(docs, svc)
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SSL" and "KAFKA_SASL_PASSWORD" not in env
        volume, key = ca_file(docs, svc)
        assert (volume["secret"]["secretName"], key) == ("corp-ca", "ca.crt")


@pytest.mark.parametrize("sets, message", [
    (["kafka.externalSecurity.protocol=SASL_SSL"], "needs kafka.externalSecurity.credentialsSecret"),
    (["kafka.externalSecurity.protocol=SSL", "kafka.externalSecurity.caSecret=a", "kafka.externalSecurity.caConfigMap=b"],
     "set caSecret or caConfigMap, not both"),
    (["kafka.externalSecurity.caSecret=a"], "a CA needs protocol SSL or SASL_SSL, not PLAINTEXT"),
    (["kafka.externalSecurity.protocol=TLS"], "protocol"),
    (["kafka.externalSecurity.saslMechanism=GSSAPI"], "saslMechanism"),
])
def test_external_security_mistakes_fail_the_install(helm, sets, message):
    with pytest.raises(chartlib.HelmFailed, match=message):
        helm.template(chartlib.CHART / "ci" / "external-kafka-values.yaml", sets=sets)

"""values.schema.json: helm must refuse wrong values before rendering anything."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.charts import chartlib

BAD_VALUES = {
    "wrong type": (["producer.replicaCount=three"], "/producer/replicaCount"),
    "unknown key": (["api.replicas=2"], "replicas"),
    "misspelt section": (["questdbb.image.tag=1"], "questdbb"),
    "bad channel": (["okx.channel=books"], "/okx/channel"),
    "bad symbol": (["config.symbols={btc_usdt}"], "/config/symbols"),
    "bad log level": (["config.logLevel=verbose"], "/config/logLevel"),
    "bad history window": (["config.historyWindow=six hours"], "/config/historyWindow"),
    "bad trades retention": (["config.retention.trades=36h"], "/config/retention/trades"),
    "bad candles retention": (["config.retention.candles=forever"], "/config/retention/candles"),
    "bad instrument type": (["okx.instTypes={OPTION}"], "/okx/instTypes"),
    "no symbols per connection": (["okx.maxSymbolsPerConnection=0"], "/okx/maxSymbolsPerConnection"),
    "root user": (["podSecurityContext.runAsNonRoot=false"], "/podSecurityContext/runAsNonRoot"),
    "privilege escalation": (["containerSecurityContext.allowPrivilegeEscalation=true"], "allowPrivilegeEscalation"),
    "port out of range": (["api.port=70000"], "/api/port"),
    "unsupported kafka": (["kafka.strimzi.version=3.9.0"], "/kafka/strimzi/version"),
    "external kafka without servers": (["kafka.strimzi.enabled=false"], "externalBootstrapServers"),
    "bad bootstrap string": (["kafka.strimzi.enabled=false", "kafka.externalBootstrapServers=kafka"], "externalBootstrapServers"),
    "not a QDB setting": (["questdb.extraConfig.HEAP=1g"], "extraConfig"),
    "bad storage size": (["questdb.persistence.size=lots"], "/questdb/persistence/size"),
    "bad trusted proxy": (["api.trustedProxies={everyone}"], "/api/trustedProxies"),
    "negative proxy hops": (["api.trustedProxyHops=-1"], "/api/trustedProxyHops"),
    "bad ingress host": (["ingress.hosts={Terminal_Example}"], "/ingress/hosts"),
    "tls without secret": (["ingress.tls[0].hosts={a.example.com}"], "secretName"),
    "short stream timeout": (["ingress.streamTimeoutSeconds=5"], "/ingress/streamTimeoutSeconds"),
    "route without gateway": (["httpRoute.enabled=true"], "parentRefs"),
    "misspelt parentRef": (["httpRoute.parentRefs[0].gateway=public"], "gateway"),
    # the operator's hooks (templates/_workload.tpl)
    "two producers": (["producer.replicaCount=2"], "/producer/replicaCount"),
    "grace period too short": (["api.terminationGracePeriodSeconds=2"], "/api/terminationGracePeriodSeconds"),
    "negative preStop sleep": (["consumer.preStopSleepSeconds=-1"], "/consumer/preStopSleepSeconds"),
    "digest without algorithm": (["producer.image.digest=0123456789abcdef0123456789abcdef"], "/producer/image/digest"),
    "bad pull policy": (["api.image.pullPolicy=Sometimes"], "/api/image/pullPolicy"),
    "QuestDB pull policy": (["questdb.image.pullPolicy=sometimes"], "/questdb/image/pullPolicy"),
    "envFrom without a source kind": (["api.extraEnvFrom[0].secret.name=x"], "secret"),
    "envFrom secret without name": (["api.extraEnvFrom[0].secretRef.optional=true"], "name"),
    "env without name": (["consumer.extraEnv[0].value=1"], "name"),
    "mount without path": (["consumer.extraVolumeMounts[0].name=data"], "mountPath"),
    "volume without source": (["frontend.extraVolumes[0].name=data"], "/frontend/extraVolumes/0"),
    "sidecar without image": (["frontend.extraContainers[0].name=proxy"], "image"),
    "init container bad name": (["producer.initContainers[0].name=Wait_For", "producer.initContainers[0].image=x"], "/producer/initContainers/0/name"),
    "spread without key": (["api.topologySpreadConstraints[0].maxSkew=1", "api.topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule"], "topologyKey"),
    "spread bad policy": (["api.topologySpreadConstraints[0].maxSkew=1", "api.topologySpreadConstraints[0].topologyKey=zone", "api.topologySpreadConstraints[0].whenUnsatisfiable=Maybe"], "whenUnsatisfiable"),
    "bad priority class": (["questdb.priorityClassName=High Priority"], "/questdb/priorityClassName"),
    "bad existing claim": (["questdb.persistence.existingClaim=My_Claim"], "/questdb/persistence/existingClaim"),
    "service annotation not a string": (["api.service.annotations.weight=3"], "/api/service/annotations/weight"),
    "misspelt service key": (["consumer.service.annotation.a=b"], "annotation"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects(helm, case):
    sets, expected = BAD_VALUES[case]
    args = ["template", "x", str(chartlib.CHART), "--kube-version", chartlib.MIN_KUBE]
    for item in sets:
        args += ["--set", item]
    result = helm.run(*args, check=False)
    assert result.returncode != 0, f"helm accepted {sets}"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert expected in result.stderr, result.stderr


def test_schema_rejects_a_values_file(helm, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"frontend": {"service": {"type": "Ingress"}}}))
    result = helm.run("lint", "--strict", str(chartlib.CHART), "-f", str(bad), check=False)
    assert result.returncode != 0
    assert "/frontend/service/type" in result.stdout + result.stderr


def test_schema_accepts_sensible_overrides(helm):
    docs = helm.template(
        sets=[
            "global.imageRegistry=registry.example.com/gostream",
            "producer.image.tag=1.2.3",
            "okx.channel=trades",
            "okx.wsUrl=ws://okx-sim:8443/ws/v5/public",
            "config.symbols={BTC-USDT,ETH-*,*-USDT-SWAP}",
            "okx.instTypes={SPOT,SWAP}",
            "questdb.extraConfig.QDB_CAIRO_WAL_ENABLED_DEFAULT=true",
            "kafka.strimzi.nodePool.storage.type=ephemeral",
            # a parent chart's globals pass (the chart can be a subchart)
            "global.storageClass=fast",
            "global.parent.anything=1",
            "config.retention.trades=90d",
            "config.retention.candles=2y",
            "questdb.auth.httpBasicAuth=true",
        ]
    )
    producer = chartlib.by_name(docs, "Deployment", "gostream-producer")
    assert producer["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/gostream/gostream-producer:1.2.3"
    config = chartlib.by_name(docs, "ConfigMap", "gostream-producer")["data"]
    assert (config["SYMBOLS"], config["OKX_INST_TYPES"]) == ("BTC-USDT,ETH-*,*-USDT-SWAP", "SPOT,SWAP")
    consumer = chartlib.by_name(docs, "ConfigMap", "gostream-consumer")["data"]
    assert (consumer["TRADES_TTL"], consumer["CANDLES_TTL"]) == ("90d", "2y")
    # QuestDB asks for credentials on HTTP: the writers send them.
    assert consumer["QUESTDB_HTTP_AUTH"] == config["QUESTDB_HTTP_AUTH"] == "true"
    # ... and its health port too, so the kubelet probes it by TCP (tests/common/test_questdb_auth.py)
    questdb = chartlib.by_name(docs, "StatefulSet", "gostream-questdb")["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert questdb[probe]["tcpSocket"] == {"port": "metrics"} and "httpGet" not in questdb[probe], probe
    assert chartlib.kind_of(docs, "KafkaNodePool")[0]["spec"]["storage"] == {"type": "ephemeral"}


def test_schema_covers_every_default_value():
    """Every key in values.yaml is declared, so additionalProperties: false cannot reject a default."""
    schema = json.loads((chartlib.CHART / "values.schema.json").read_text())
    values = yaml.safe_load((chartlib.CHART / "values.yaml").read_text())

    def walk(value, node, path):
        if not isinstance(value, dict) or "properties" not in node:
            return
        for key, sub in value.items():
            assert key in node["properties"] or node.get("additionalProperties") not in (False, None), f"{path}/{key} undeclared"
            if key in node["properties"]:
                walk(sub, node["properties"][key], f"{path}/{key}")

    walk(values, schema, "")
    assert schema["additionalProperties"] is False


def test_the_chart_works_as_a_subchart(helm, tmp_path):
    """A parent chart's own globals reach the subchart's values and must pass its schema."""
    parent = tmp_path / "platform"
    (parent / "charts").mkdir(parents=True)
    (parent / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "dependencies": [{"name": "gostream", "version": "0.1.0"}]}))
    (parent / "values.yaml").write_text(yaml.safe_dump({
        "global": {"imageRegistry": "registry.example.com", "storageClass": "fast", "platform": {"team": "md"}},
        "gostream": {"api": {"replicaCount": 2}}}))
    shutil.copytree(chartlib.CHART, parent / "charts" / "gostream")
    out = helm.run("template", "md", str(parent), "--kube-version", chartlib.MIN_KUBE).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    api = chartlib.by_name(docs, "Deployment", "md-gostream-api")
    assert api["spec"]["replicas"] == 2
    assert api["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/gostream-api:0.1.0"

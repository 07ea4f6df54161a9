"""The four images, built from images/<service>/Dockerfile on the local base and run with
podman as the Helm chart runs them (UID 10001, read-only root, only /tmp writable, no
capabilities), against the real Kafka and QuestDB of the test session: health endpoints,
then one trade from the simulated OKX exchange through producer -> Kafka -> consumer ->
QuestDB -> api -> frontend.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from stack import components as c
from tests.conftest import TEST_PORTS, sql, unique, wait_for
from tests.images import podman as pm
from tests.okxsim import generate

# Ports of their own: the session's (moved by GOSTREAM_TEST_PORT_OFFSET) + 200, so they
# meet neither the ports of this session's Kafka, QuestDB and services nor another session's.
PORTS = {svc: getattr(TEST_PORTS, svc) + 200 for svc in ("producer", "consumer", "api", "frontend")}
LABELS = ("title", "description", "version", "revision", "licenses")


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


class Containers:
    """Containers started by one test; removed (logs kept in test-artifacts) at teardown."""

    def __init__(self, test_name: str) -> None:
        self.test_name = test_name
        self.names: list[str] = []

    def run(self, service: str, image: str, env: dict[str, str]) -> str:
        port = PORTS[service]
        if c.port_open(port):
            pytest.fail(f"port {port} is taken: stop whatever listens there (an earlier test run?) and retry")
        name = f"gostream-test-{service}-{unique('')}"
        args = ["run", "-d", "--name", name, "--network", "host",
                # as in the chart: read-only root, an emptyDir-like /tmp, no capabilities
                "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=64m,mode=1777",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *pm.ULIMITS]
        for key, value in {**env, "LOG_LEVEL": "INFO"}.items():
            args += ["-e", f"{key}={value}"]
        pm.podman(*args, image)
        self.names.append(name)
        return name

    def logs(self, name: str, lines: int = 40) -> str:
        result = pm.podman("logs", "--tail", str(lines), name, check=False)
        return (result.stdout + result.stderr).strip()

    def running(self, name: str) -> bool:
        result = pm.podman("inspect", "--format", "{{.State.Running}}", name, check=False)
        return result.stdout.strip() == "true"

    def wait_http(self, name: str, url: str, timeout_s: float = 90) -> bytes:
        body = [b""]

        def ok():
            if not self.running(name):
                pytest.fail(f"container {name} exited:\n{self.logs(name)}")
            status, body[0] = http_get(url)
            return status == 200

        try:
            wait_for(ok, timeout_s=timeout_s, interval_s=0.5, message=f"{url} to answer 200")
        except pytest.fail.Exception as exc:
            raise pytest.fail.Exception(f"{exc}\nlast answer: {body[0][:300]!r}\nlogs of {name}:\n{self.logs(name)}") from None
        return body[0]

    def remove_all(self) -> None:
        out = pm.ROOT / "test-artifacts" / "images" / self.test_name
        out.mkdir(parents=True, exist_ok=True)
        for name in reversed(self.names):
            pm.podman("stop", "--time", "10", name, check=False, timeout=60)
            (out / f"{name}.log").write_text(self.logs(name, lines=5000) + "\n")
            pm.podman("rm", "-f", "-v", name, check=False, timeout=60)


@pytest.fixture
def containers(request):
    started = Containers(request.node.name)
    yield started
    started.remove_all()


@pytest.mark.parametrize("service", pm.SERVICES)
def test_image_is_non_root_small_and_labelled(built_images, service):
    image = built_images[service]
    config = pm.inspect_image(image)["Config"]
    assert config.get("User") == "10001:10001", f"{image} runs as {config.get('User')!r}, not 10001:10001"
    labels = config.get("Labels") or {}
    for label in LABELS:
        assert labels.get(f"org.opencontainers.image.{label}"), f"{image} lacks label org.opencontainers.image.{label}"
    assert labels["org.opencontainers.image.title"] == f"gostream-{service}"
    assert config.get("Entrypoint"), f"{image} has no entrypoint"
    assert "/tmp" in (config.get("Volumes") or {}), f"{image} does not declare /tmp as its writable path"
    size = pm.image_size_mb(image)
    assert size <= pm.SIZE_LIMIT_MB, f"{image} is {size:.0f} MB, over the {pm.SIZE_LIMIT_MB} MB limit"

    # What a container of it is, started the way the chart starts it (the image's user).
    probe = ("id -u; id -g; command -v python3; "
             "for tool in gcc cc g++ make pip pip3 apt-get dpkg perl; do command -v $tool; done; "
             "ls /root/.cache /opt/venv/bin/pip 2>/dev/null; "
             "touch /opt/venv/x 2>/dev/null && echo venv-writable; "
             "touch /tmp/x && echo tmp-writable")
    result = pm.podman("run", "--rm", *pm.ULIMITS, "--tmpfs", "/tmp:rw,mode=1777", "--entrypoint", "sh", image,
                       "-c", probe)
    lines = result.stdout.split()
    assert lines[:2] == ["10001", "10001"], f"{image} starts as uid/gid {lines[:2]}, not 10001"
    assert lines[2].endswith("/python3"), f"no python3 on PATH in {image}: {result.stdout}"
    assert lines[3:] == ["tmp-writable"], \
        f"{image}: compilers, pip, a package manager, caches or a writable venv found: {lines[3:]}"


def test_images_carry_the_pieces_only_their_service_needs(built_images):
    def importable(image: str, module: str) -> bool:
        code = f"import importlib.util as u; print(u.find_spec({module!r}) is not None)"
        out = pm.podman("run", "--rm", *pm.ULIMITS, "--entrypoint", "python3", image, "-c", code).stdout.strip()
        return out == "True"

    assert not importable(built_images["producer"], "questdb")
    assert not importable(built_images["consumer"], "websockets")
    assert not importable(built_images["api"], "kafka")
    assert not importable(built_images["frontend"], "sqlalchemy")
    assert importable(built_images["api"], "psycopg2")
    # The pinned Lightweight Charts, from the npm build stage, served by the package.
    script = pm.podman(
        "run", "--rm", *pm.ULIMITS, "--entrypoint", "python3", built_images["frontend"], "-c",
        "import gostream.frontend.app as a; print(a.VENDOR_JS.stat().st_size)").stdout.strip()
    assert int(script) > 50_000, f"Lightweight Charts missing or truncated in the frontend image ({script} bytes)"


# `containers` comes last so its teardown runs first, while the exchange still answers.
def test_a_trade_flows_through_the_four_containers(built_images, kafka, questdb, topic, exchange, containers):
    symbol = unique("IMG") + "-USDT"
    trades = generate(symbol, 7)
    kafka_env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{TEST_PORTS.kafka}",
        "KAFKA_TOPIC": topic,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
    }
    questdb_env = {
        "QUESTDB_HOST": "127.0.0.1",
        "QUESTDB_HTTP_PORT": str(TEST_PORTS.questdb_http),
        "QUESTDB_PG_PORT": str(TEST_PORTS.questdb_pg),
    }
    api_url = f"http://127.0.0.1:{PORTS['api']}"
    front_url = f"http://127.0.0.1:{PORTS['frontend']}"

    # In dependency order: the consumer creates the table and views the api reads.
    names = {
        "consumer": containers.run("consumer", built_images["consumer"], {
            **kafka_env, **questdb_env, "KAFKA_GROUP_ID": f"{topic}-group", "HEALTH_PORT": str(PORTS["consumer"])}),
    }
    health = {svc: f"http://127.0.0.1:{PORTS[svc]}" for svc in PORTS}
    containers.wait_http(names["consumer"], health["consumer"] + "/readyz")
    names["api"] = containers.run("api", built_images["api"], {**questdb_env, "PORT": str(PORTS["api"])})
    names["frontend"] = containers.run("frontend", built_images["frontend"], {"API_URL": api_url, "PORT": str(PORTS["frontend"])})
    names["producer"] = containers.run("producer", built_images["producer"], {
        **kafka_env,
        **questdb_env,  # resume and the completeness ledger
        "OKX_WS_URL": exchange.ws_url(),
        "OKX_REST_URL": exchange.rest_url,
        "SYMBOLS": symbol,
        "HEALTH_PORT": str(PORTS["producer"]),
    })

    for svc in ("api", "frontend", "producer", "consumer"):
        containers.wait_http(names[svc], health[svc] + "/healthz")
        containers.wait_http(names[svc], health[svc] + "/readyz")
        metrics = containers.wait_http(names[svc], health[svc] + "/metrics").decode()
        assert "# TYPE " in metrics, f"{svc} /metrics is not Prometheus text: {metrics[:200]!r}"
    wait_for(lambda: exchange.subscribed(symbol) == 1, message=f"the producer container subscribed to {symbol}")

    exchange.emit(trades)

    wait_for(lambda: sql(f"select count() n from trades where symbol = '{symbol}'")[0]["n"] == len(trades),
             timeout_s=60, message=f"{len(trades)} trades of {symbol} in QuestDB")
    first_s = int(trades[0]["ts"]) // 1000
    minute = first_s // 60 * 60
    assert all(int(t["ts"]) // 1000 // 60 * 60 == minute for t in trades), "test trades must share one minute"
    query = f"/api/candles?symbol={symbol}&interval=1m&from={minute - 60}&to={minute + 120}"

    def candles():
        status, body = http_get(front_url + query)
        if status != 200:
            return None
        found = json.loads(body)
        return found if found and found[-1]["volume"] > 0 and len(found) == 1 else None

    got = wait_for(candles, timeout_s=60, message=f"a candle of {symbol} through the frontend container")
    prices = [float(t["px"]) for t in trades]
    expected = {"time": minute, "open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1],
                "volume": sum(float(t["sz"]) for t in trades)}
    assert got[0].keys() >= expected.keys()
    assert got[0]["time"] == expected["time"]
    for key in ("open", "high", "low", "close", "volume"):
        assert got[0][key] == pytest.approx(expected[key], rel=1e-9), (key, got[0], expected)
    # The same answer straight from the api container.
    status, body = http_get(api_url + query.removeprefix("/api"))
    assert status == 200 and json.loads(body) == got
    for svc, name in names.items():
        assert containers.running(name), f"{svc} container stopped:\n{containers.logs(name)}"

"""`make up` / `make down` as a user runs them: a whole second stack, ports shifted."""

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from stack import components as c
from tests.conftest import metric, sql, wait_for

OFFSET = 12000
PORTS = c.Ports().shifted(OFFSET)


@pytest.fixture
def stack_env(tmp_path):
    env = {**os.environ, "GOSTREAM_STACK_DIR": str(tmp_path), "GOSTREAM_PORT_OFFSET": str(OFFSET),
           "EXCHANGE": "sim", "SIM_RATE": "50", "CONSUMERS": "2"}
    yield env, tmp_path
    subprocess.run([sys.executable, "-m", "stack", "down"], env=env, cwd=c.ROOT, capture_output=True, timeout=120)


def stack(env, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stack", *args], env=env, cwd=c.ROOT, capture_output=True,
                          text=True, timeout=timeout)


def components(state_dir) -> dict:
    state = json.loads((state_dir / "state.json").read_text())
    return {comp["name"]: comp for comp in state["components"]}


def stored() -> int:
    return sql("select count() n from trades", port=PORTS.questdb_http)[0]["n"]


def test_up_status_restart_down_and_up_again(stack_env):
    env, state_dir = stack_env
    up = stack(env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "the stack is up" in up.stdout
    for url in (f"127.0.0.1:{PORTS.kafka}", f"http://127.0.0.1:{PORTS.questdb_http}", f":{PORTS.producer}/metrics"):
        assert url in up.stdout

    wait_for(lambda: stored() > 0, timeout_s=60, message="simulated trades in QuestDB")
    # Two consumers share the topic's partitions (CONSUMERS=2).
    assert {"consumer", "consumer-2"} <= set(components(state_dir))
    def owned():
        counts = [metric(c.consumer_port(PORTS, r), "gostream_consumer_assigned_partitions") for r in (0, 1)]
        return sum(counts) == 12 and all(counts)

    wait_for(owned, timeout_s=60, message="the 12 partitions shared by the two consumers")
    status = stack(env, "status")
    assert status.returncode == 0
    rows = [line.split() for line in status.stdout.splitlines()[1:]]
    assert {row[0]: row[1] for row in rows} == {name: "ready" for name in components(state_dir)}

    # A crashed service comes back by itself, and the restart is counted.
    consumer_pid = components(state_dir)["consumer"]["pid"]
    os.kill(consumer_pid, signal.SIGKILL)
    wait_for(lambda: (lambda comp: comp["restarts"] == 1 and comp["ready"] and comp["pid"] != consumer_pid)(
        components(state_dir)["consumer"]), timeout_s=60, message="the consumer restarted")
    before = stored()
    wait_for(lambda: stored() > before, timeout_s=60, message="rows still growing after the restart")

    down = stack(env, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    pids = [comp["pid"] for comp in json.loads((state_dir / "state.json").read_text())["components"]]
    assert pids == [None] * len(pids)
    assert not c.port_open(PORTS.kafka) and not c.port_open(PORTS.questdb_http)
    assert stack(env, "status").returncode == 3
    # The simulated exchange's trades live apart from a real run's store.
    assert f"data kept in {state_dir / 'data-sim'}" in down.stdout
    assert (state_dir / "data-sim" / "questdb").is_dir() and not (state_dir / "data").exists()

    # Data survives a restart of the whole stack.
    kept = before
    up_again = stack(env, "up")
    assert up_again.returncode == 0, up_again.stdout + up_again.stderr
    assert stored() >= kept


def test_up_without_an_exchange_starts_everything_and_says_why(tmp_path):
    closed = c.Ports().shifted(OFFSET).exchange  # nothing listens there in this test
    env = {**os.environ, "GOSTREAM_STACK_DIR": str(tmp_path), "GOSTREAM_PORT_OFFSET": str(OFFSET), "EXCHANGE": "",
           "OKX_WS_URL": f"ws://127.0.0.1:{closed}/ws/v5/business", "OKX_REST_URL": f"http://127.0.0.1:{closed}"}
    try:
        up = stack(env, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "the stack is up, but without a live feed" in up.stdout
        assert f"okx: cannot connect: refused: nothing accepts connections at 127.0.0.1:{closed}" in up.stdout
        assert "make up EXCHANGE=sim" in up.stdout
        states = {name: comp["ready"] for name, comp in components(tmp_path).items()}
        assert states.pop("producer") is False and all(states.values()), states
        for url in (f"http://127.0.0.1:{PORTS.api}/candles", f"http://127.0.0.1:{PORTS.frontend}/"):
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
    finally:
        stack(env, "down", timeout=120)

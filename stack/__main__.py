"""python -m stack up|down|status|logs: the local stack behind `make up`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stack import components as c
from stack.supervisor import Supervisor

STATE_DIR = Path(os.environ.get("GOSTREAM_STACK_DIR", c.ROOT / ".stack"))
STATE_FILE = STATE_DIR / "state.json"
# GOSTREAM_PORT_OFFSET moves every port, to run a second stack beside the first (tests).
PORTS = c.Ports().shifted(int(os.environ.get("GOSTREAM_PORT_OFFSET") or 0))
# Records are keyed by symbol: partitions bound how many consumers share the load
# (CONSUMERS=N make up), so there are enough for many symbols. An existing topic keeps
# its count (kafka-topics.sh --alter --partitions raises it).
TOPIC_PARTITIONS = 12
# How long `make up` waits for the producer's feed once everything else is ready.
FEED_GRACE_S = 30.0


def data_dir(exchange: str) -> Path:
    """Where Kafka, QuestDB and Prometheus keep their data. The simulated exchange gets its
    own, so trying it leaves no simulated trade in the store a real run uses (its ids,
    far above OKX's, would also read as a feed gone backwards)."""
    return STATE_DIR / ("data-sim" if exchange == "sim" else "data")


def specs(ports: c.Ports) -> tuple[list[c.Spec], dict]:
    env = {k: v for k, v in os.environ.items() if v}  # make exports unset variables as ""
    overrides = {}
    wanted = []
    data = data_dir(env.get("EXCHANGE", "okx"))
    if env.get("EXCHANGE", "okx") == "sim":
        wanted.append(c.exchange(ports, rate=float(env.get("SIM_RATE", "20"))))
        overrides["OKX_WS_URL"] = f"ws://127.0.0.1:{ports.exchange}/ws/v5/business"
        overrides["OKX_REST_URL"] = f"http://127.0.0.1:{ports.exchange}"
    service_env = c.service_env(ports, **overrides)
    consumers = int(env.get("CONSUMERS", "1"))
    if not 1 <= consumers <= TOPIC_PARTITIONS:
        raise SystemExit(f"CONSUMERS={consumers}: expected 1..{TOPIC_PARTITIONS} (the topic's partitions)")
    wanted += [
        c.kafka(data, ports),
        c.questdb(data, ports),
        *(c.consumer(ports, service_env, replica) for replica in range(consumers)),
        c.producer(ports, service_env),
        c.api(ports, service_env),
        c.frontend(ports, service_env),
        c.prometheus(data, ports, consumers=consumers),
    ]
    topics = {service_env["KAFKA_TOPIC"]: TOPIC_PARTITIONS, service_env["KAFKA_DLQ_TOPIC"]: 1}
    return wanted, {"kafka": lambda: c.ensure_topics(ports.kafka, topics)}


def read_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return None


def supervisor_running(state: dict | None) -> bool:
    if not state or state.get("stopped"):
        return False
    try:
        os.kill(state["supervisor_pid"], 0)
        return True
    except OSError:
        return False


def cmd_supervise(_args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    wanted, hooks = specs(PORTS)
    Supervisor(wanted, STATE_DIR, hooks).run()
    return 0


def cmd_up(args) -> int:
    if supervisor_running(read_state()):
        print("the stack is already running:")
        return cmd_status(args)
    c.ensure_jars()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.unlink(missing_ok=True)
    (STATE_DIR / "exchange").write_text(os.environ.get("EXCHANGE") or "okx")
    (STATE_DIR / "logs").mkdir(exist_ok=True)
    with open(STATE_DIR / "logs" / "supervisor.log", "ab") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "stack", "supervise"],
            cwd=c.ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + args.timeout
    shown = ""
    feed_waiting_since = None
    while time.monotonic() < deadline:
        time.sleep(1)
        state = read_state()
        if not state:
            if supervisor.poll() is not None:
                print("the supervisor exited; see .stack/logs/supervisor.log", file=sys.stderr)
                return 1
            continue
        if state.get("error") or state.get("stopped"):
            print(f"the stack failed to start:\n{state.get('error')}", file=sys.stderr)
            return 1
        waiting = [comp["name"] for comp in state["components"] if not comp["ready"]]
        if not waiting:
            print("the stack is up:")
            return cmd_status(args)
        # Everything runs but the exchange does not answer: the stack is up without a live
        # feed (the terminal shows what is stored); say why and what to try.
        started = {comp["name"] for comp in state["components"] if comp["pid"]}
        if waiting == ["producer"] and started == {comp["name"] for comp in state["components"]}:
            feed_waiting_since = feed_waiting_since or time.monotonic()
            problems = c.readyz_problems(PORTS.producer)
            if any(p.startswith("okx: cannot connect") for p in problems) \
                    or time.monotonic() - feed_waiting_since > FEED_GRACE_S:
                print("the stack is up, but without a live feed:")
                for problem in problems:
                    print(f"  producer: {problem}")
                if os.environ.get("EXCHANGE", "okx") != "sim":
                    print("  (no internet? `make down`, then `make up EXCHANGE=sim` for the simulated exchange)")
                cmd_status(args)
                return 0
        if waiting[0] != shown:
            shown = waiting[0]
            print(f"waiting for {shown} ...", flush=True)
    print(f"not ready after {args.timeout} s: {', '.join(waiting)}", file=sys.stderr)
    _explain(waiting)
    return 1


def _explain(names: list[str]) -> None:
    ports = PORTS
    for name in names:
        port = getattr(ports, name, None)
        if name in ("producer", "consumer") and port:
            for problem in c.readyz_problems(port):
                print(f"  {name}: {problem}", file=sys.stderr)
            if name == "producer":
                print("  (no internet? run `make up EXCHANGE=sim` for the simulated exchange)", file=sys.stderr)


def cmd_down(_args) -> int:
    state = read_state()
    if not supervisor_running(state):
        print("the stack is not running")
        return 0
    os.kill(state["supervisor_pid"], signal.SIGTERM)
    for _ in range(120):
        if not supervisor_running(read_state()):
            kept = data_dir((STATE_DIR / "exchange").read_text().strip() if (STATE_DIR / "exchange").exists() else "okx")
            print(f"the stack is stopped (data kept in {kept})")
            return 0
        time.sleep(0.5)
    print("the supervisor did not stop in 60 s", file=sys.stderr)
    return 1


def cmd_status(_args) -> int:
    state = read_state()
    if not supervisor_running(state):
        print("the stack is not running (make up)")
        return 3
    now = time.time()
    print(f"{'component':<10} {'state':<9} {'pid':>7} {'restarts':>8} {'uptime':>8}  url")
    for comp in state["components"]:
        status = "ready" if comp["ready"] else ("starting" if comp["pid"] else "down")
        uptime = f"{now - comp['started_at']:.0f}s" if comp["pid"] and comp["started_at"] else "-"
        print(f"{comp['name']:<10} {status:<9} {comp['pid'] or '-':>7} {comp['restarts']:>8} {uptime:>8}  {comp['url']}")
    return 0


def cmd_logs(args) -> int:
    logs = sorted((STATE_DIR / "logs").glob("*.log"))
    if args.component:
        logs = [p for p in logs if p.stem == args.component]
        if not logs:
            print(f"no log for {args.component}", file=sys.stderr)
            return 1
    if not logs:
        print("no logs yet (make up)")
        return 0
    tail = ["tail", "-n", str(args.lines)] + (["-F"] if args.follow else []) + [str(p) for p in logs]
    return subprocess.call(tail)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything in the background and wait until ready")
    up.add_argument("--timeout", type=float, default=300)
    sub.add_parser("down", help="stop everything, keep the data")
    sub.add_parser("status", help="what runs, what is ready, restarts")
    logs = sub.add_parser("logs", help="show logs")
    logs.add_argument("component", nargs="?")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("-f", "--follow", action="store_true")
    sub.add_parser("jars", help="fetch Kafka and QuestDB from Maven Central (once)")
    sub.add_parser("supervise", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        return {"up": cmd_up, "down": cmd_down, "status": cmd_status, "logs": cmd_logs, "supervise": cmd_supervise,
                "jars": lambda _args: c.ensure_jars() or 0}[
            args.command
        ](args)
    except c.SetupError as exc:
        print(f"setup: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

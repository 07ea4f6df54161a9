"""Runs the stack's processes in order and restarts any that dies, as Kubernetes would.

State (pids, readiness, restarts) is written to a JSON file that `make status` reads.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

from stack.components import Spec
from stack.process import NotReady, Process

log = logging.getLogger("stack")

MAX_BACKOFF_S = 60.0


class Supervisor:
    def __init__(self, specs: list[Spec], state_dir: Path, after_ready: dict | None = None) -> None:
        self.state_file = state_dir / "state.json"
        self.processes = [Process(spec, state_dir / "logs") for spec in specs]
        # name -> callable run once after that component first becomes ready (topics...)
        self.after_ready = after_ready or {}
        self.restarts = {p.spec.name: 0 for p in self.processes}
        self.started_at: dict[str, float] = {}
        self.next_start: dict[str, float] = {}
        self.ready: dict[str, bool] = {}
        self.error: str | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        try:
            self._start_in_order()
            self._watch()
        finally:
            self._stop_all()

    def _start_in_order(self) -> None:
        for process in self.processes:
            if self.stopping.is_set():
                return
            self._start(process)
            try:
                process.wait_ready(timeout_s=180, abort=self.stopping, started_only=True)
            except NotReady as exc:
                if self.stopping.is_set():
                    return
                self.error = str(exc)
                log.error("%s", exc)
                self._write_state()
                self.stopping.set()
                return
            self.ready[process.spec.name] = _safe(process.spec.ready)
            hook = self.after_ready.get(process.spec.name)
            if hook:
                hook()
            self._write_state()

    def _start(self, process: Process) -> None:
        process.start()
        self.started_at[process.spec.name] = time.time()
        log.info("started %s (pid %s)", process.spec.name, process.pid)

    def _watch(self) -> None:
        while not self.stopping.wait(1.0):
            for process in self.processes:
                name = process.spec.name
                if process.alive():
                    self.ready[name] = _safe(process.spec.ready)
                    continue
                self.ready[name] = False
                due = self.next_start.get(name)
                if due is None:
                    self.restarts[name] += 1
                    # Back off like a CrashLoopBackOff: 1, 2, 4 ... 60 s, reset after
                    # ten minutes of good behaviour.
                    uptime = time.time() - self.started_at.get(name, 0)
                    if uptime > 600:
                        self.restarts[name] = 1
                    delay = min(MAX_BACKOFF_S, 2 ** (self.restarts[name] - 1))
                    self.next_start[name] = time.time() + delay
                    log.warning("%s exited with %s; restarting in %.0f s", name, process.popen.returncode, delay)
                elif time.time() >= due:
                    del self.next_start[name]
                    self._start(process)
            self._write_state()

    def _stop_all(self) -> None:
        for process in reversed(self.processes):
            if process.alive():
                log.info("stopping %s", process.spec.name)
                process.stop()
        self.ready.clear()
        self._write_state(stopped=True)

    def _write_state(self, stopped: bool = False) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "stopped": stopped,
            "error": self.error,
            "components": [
                {
                    "name": p.spec.name,
                    "pid": p.pid if p.alive() else None,
                    "ready": self.ready.get(p.spec.name, False),
                    "restarts": self.restarts[p.spec.name],
                    "started_at": self.started_at.get(p.spec.name),
                    "url": p.spec.url,
                    "log": str(p.log_path),
                }
                for p in self.processes
            ],
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_file)


def _safe(check) -> bool:
    try:
        return bool(check())
    except Exception:
        return False

"""One stack component as a child process with a log file and a readiness wait."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from stack.components import Spec


class NotReady(RuntimeError):
    pass


class Process:
    def __init__(self, spec: Spec, log_dir: Path) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self.popen: subprocess.Popen | None = None
        log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> Process:
        if self.spec.prepare:
            self.spec.prepare()
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.spec.argv,
            cwd=self.spec.cwd,
            env={**os.environ, **self.spec.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal is not meant for it
        )
        log.close()
        return self

    def wait_ready(self, timeout_s: float = 120.0, abort: threading.Event | None = None,
                   started_only: bool = False) -> Process:
        """Until the spec's ready check passes (with ``started_only``, its started check if
        it has one)."""
        check = (self.spec.started if started_only else None) or self.spec.ready
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if abort is not None and abort.is_set():
                raise NotReady(f"{self.spec.name}: start aborted")
            if not self.alive():
                raise NotReady(f"{self.spec.name} exited with {self.popen.returncode}; last log lines:\n{self.tail()}")
            if check():
                return self
            time.sleep(0.25)
        raise NotReady(f"{self.spec.name} not ready after {timeout_s:.0f} s; last log lines:\n{self.tail()}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after the spec's grace period."""
        if not self.alive():
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(self.spec.stop_timeout_s)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        if self.alive():
            self.popen.kill()
        return self.popen.wait() if self.popen else None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

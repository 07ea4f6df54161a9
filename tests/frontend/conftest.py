"""The frontend under gunicorn on TEST_PORTS.frontend, proxying to the session's api."""

from __future__ import annotations

import pytest

from stack import components as c
from stack.process import Process
from tests.conftest import TEST_PORTS, _start


@pytest.fixture(scope="session")
def frontend(api, stack_dir) -> Process:
    from gostream.frontend.app import VENDOR_JS

    if not VENDOR_JS.exists():
        pytest.fail(f"{VENDOR_JS} is missing: run `make frontend-assets` (make test does)")
    env = c.service_env(TEST_PORTS, LOG_LEVEL="INFO")
    process = _start(c.frontend(TEST_PORTS, env), TEST_PORTS.frontend, stack_dir).wait_ready(60)
    yield process
    process.stop()

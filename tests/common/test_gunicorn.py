"""gunicorn settings shared by the api and the frontend."""

from __future__ import annotations

import pytest

from gostream.common.gunicorn import settings


@pytest.mark.parametrize(("budget", "expected"), [(None, 5), ("30", 5), ("2", 2), ("3.5", 3.5)])
def test_graceful_timeout_stays_within_the_shutdown_budget(monkeypatch, budget, expected):
    """SHUTDOWN_TIMEOUT_S (what the pod's grace period leaves, set by the chart) caps the
    service's own graceful timeout and never lengthens it."""
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    if budget is None:
        monkeypatch.delenv("SHUTDOWN_TIMEOUT_S", raising=False)
    else:
        monkeypatch.setenv("SHUTDOWN_TIMEOUT_S", budget)
    assert settings("api", port=3000, workers=1, threads=1, graceful_timeout=5)["graceful_timeout"] == expected

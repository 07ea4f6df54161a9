"""The frontend's settings, from the environment (see gostream.common.settings)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from gostream.common.settings import SettingsError, require_positive


@dataclass(frozen=True)
class FrontendSettings:
    api_url: str = "http://127.0.0.1:3000"
    # Reading from the api: a stream sends a keep-alive every 15 s, so this is plenty.
    api_timeout_s: float = 60.0
    log_level: str = "INFO"

    def check(self) -> None:
        require_positive(self, "api_timeout_s")
        parts = urlsplit(self.api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"API_URL={self.api_url!r}: expected http://host:port")

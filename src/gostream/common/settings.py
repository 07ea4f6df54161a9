"""Settings from the environment.

Each service declares a frozen dataclass; every field is read from the environment
variable of the same name upper-cased (``kafka_topic`` <- ``KAFKA_TOPIC``). A bad value
stops the service at start-up with a message naming the variable, never later.
"""

from __future__ import annotations

import dataclasses
import os
import typing
import urllib.parse
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _convert(name: str, raw: str, kind: Any) -> Any:
    raw = raw.strip()
    if kind is str:
        return raw
    if kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise SettingsError(f"{name}={raw!r}: expected true or false")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected {kind.__name__}") from None
    if typing.get_origin(kind) is tuple:
        items = tuple(item.strip() for item in raw.split(",") if item.strip())
        if not items:
            raise SettingsError(f"{name}={raw!r}: expected a comma-separated list")
        return items
    raise TypeError(f"unsupported settings type {kind!r} for {name}")


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from the environment, keeping defaults for unset variables."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.name.upper()
        if name in environ and environ[name].strip() != "":
            values[field.name] = _convert(name, environ[name], hints[field.name])
    settings = cls(**values)
    check = getattr(settings, "check", None)
    if check is not None:
        check()
    return settings


def require_positive(settings: object, *names: str) -> None:
    """Raise SettingsError for the first listed field that is not > 0."""
    for field in names:
        if getattr(settings, field) <= 0:
            raise SettingsError(f"{field.upper()} must be > 0, got {getattr(settings, field)!r}")


@dataclasses.dataclass(frozen=True)
class KafkaSettings:
    """Shared by producer and consumer."""

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic: str = "trades"
    kafka_dlq_topic: str = "trades.dlq"


@dataclasses.dataclass(frozen=True)
class QuestDBSettings:
    """Shared by consumer and api."""

    questdb_host: str = "localhost"
    questdb_http_port: int = 9000
    questdb_pg_port: int = 8812
    questdb_user: str = "admin"
    questdb_password: str = "quest"
    # Send QUESTDB_USER/QUESTDB_PASSWORD on the HTTP port too (/exec and ILP over HTTP), for a
    # QuestDB with http.user/http.password set (the chart's questdb.auth.httpBasicAuth).
    questdb_http_auth: bool = False

    @property
    def questdb_http_url(self) -> str:
        """QuestDB's HTTP base URL, carrying the credentials when QUESTDB_HTTP_AUTH is on
        (common.schema sends them as basic auth; they never reach a log through it)."""
        userinfo = ""
        if self.questdb_http_auth:
            quote = urllib.parse.quote
            userinfo = f"{quote(self.questdb_user, safe='')}:{quote(self.questdb_password, safe='')}@"
        return f"http://{userinfo}{self.questdb_host}:{self.questdb_http_port}"

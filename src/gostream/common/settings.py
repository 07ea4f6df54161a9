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


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


@dataclasses.dataclass(frozen=True)
class KafkaSettings:
    """Shared by producer and consumer."""

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic: str = "trades"
    kafka_dlq_topic: str = "trades.dlq"
    # How clients reach the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (TLS
    # with a user and password: Strimzi's scram-sha-512 listeners).
    kafka_security_protocol: str = "PLAINTEXT"
    # The CA (PEM) the brokers' certificates are checked against under SSL and SASL_SSL;
    # empty: the system's CAs. The host name is always checked.
    kafka_ssl_cafile: str = ""
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    # Never in a repr, a log line or /readyz.
    kafka_sasl_password: str = dataclasses.field(default="", repr=False)

    @property
    def kafka_uses_sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL_")

    @property
    def kafka_uses_tls(self) -> bool:
        return self.kafka_security_protocol.endswith("SSL")

    def check(self) -> None:
        if self.kafka_security_protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise SettingsError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol!r}: "
                                f"expected one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}")
        if self.kafka_uses_sasl:
            if self.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
                raise SettingsError(f"KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism!r}: "
                                    f"expected one of {', '.join(KAFKA_SASL_MECHANISMS)}")
            if not self.kafka_sasl_username or not self.kafka_sasl_password:
                raise SettingsError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                                    "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        if self.kafka_ssl_cafile:
            if not self.kafka_uses_tls:
                raise SettingsError(f"KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL="
                                    f"{self.kafka_security_protocol} does not use TLS (SSL or SASL_SSL)")
            if not os.path.isfile(self.kafka_ssl_cafile):
                raise SettingsError(f"KAFKA_SSL_CAFILE={self.kafka_ssl_cafile!r}: no such file")


def kafka_client_config(settings: KafkaSettings) -> dict[str, Any]:
    """The kafka-python keyword arguments for reaching the brokers (servers, TLS, SASL):
    every producer, consumer and admin client of the services is built with these."""
    config: dict[str, Any] = {
        "bootstrap_servers": [server.strip() for server in settings.kafka_bootstrap_servers.split(",") if server.strip()],
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_uses_tls:
        config["ssl_check_hostname"] = True
        if settings.kafka_ssl_cafile:
            config["ssl_cafile"] = settings.kafka_ssl_cafile
    if settings.kafka_uses_sasl:
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = settings.kafka_sasl_password
    return config


@dataclasses.dataclass(frozen=True)
class QuestDBSettings:
    """Shared by consumer and api."""

    questdb_host: str = "localhost"
    questdb_http_port: int = 9000
    questdb_pg_port: int = 8812
    questdb_user: str = "admin"
    # Never in a repr (like KAFKA_SASL_PASSWORD).
    questdb_password: str = dataclasses.field(default="quest", repr=False)
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

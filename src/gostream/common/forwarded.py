"""X-Forwarded-* trusted only from the proxies in front of a service (werkzeug's ProxyFix).

A proxy in front of the api (the frontend's /api proxy, an ingress controller) appends the
client's address to ``X-Forwarded-For`` and its own view of the scheme and host to
``X-Forwarded-Proto`` / ``X-Forwarded-Host``. ProxyFix takes the ``hops``-th value from the
right of each as the request's ``remote_addr``, scheme and host, but only when the peer
that sent the request is in one of the ``networks``: anyone else's headers are ignored,
so a client reaching the service directly cannot choose its address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from werkzeug.middleware.proxy_fix import ProxyFix


def parse_networks(items: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """CIDRs (or single addresses) -> networks; ValueError names the bad item."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR") from None
    return tuple(networks)


class TrustedProxyFix:
    """ProxyFix (For, Proto, Host; ``hops`` proxies) for requests from ``networks`` only."""

    def __init__(self, app, hops: int, networks: Iterable[str]) -> None:
        self.app = app
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops)
        self.networks = parse_networks(networks)

    def _trusted(self, peer: str | None) -> bool:
        try:
            address = ipaddress.ip_address((peer or "").split("%")[0])
        except ValueError:  # a unix socket, or nothing
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __call__(self, environ, start_response):
        if self._trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)


def trust_forwarded(app, hops: int, networks: Iterable[str]):
    """``app`` wrapped in TrustedProxyFix; unchanged when ``hops`` is 0 (no proxy trusted)."""
    return TrustedProxyFix(app, hops, networks) if hops > 0 else app

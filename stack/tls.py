"""Throw-away certificates for a TLS broker (tests): a CA and a server certificate it signs,
PEM files made with openssl, the form Kafka reads with ``ssl.keystore.type=PEM``."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CA:
    cert: Path  # what clients trust
    key: Path


@dataclass(frozen=True)
class ServerCert:
    ca: Path  # the CA's certificate
    keystore: Path  # the server's unencrypted PKCS#8 key, then its certificate


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise RuntimeError("`openssl` not found: install it, e.g. `apt-get install -y openssl`")
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def make_ca(directory: Path, name: str) -> CA:
    """A self-signed CA, valid two days, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CA(directory / f"{name}-ca.pem", directory / f"{name}-ca.key")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", str(ca.key), "-out", str(ca.cert))
    return ca


def make_server_cert(directory: Path, ca: CA, hosts: list[str]) -> ServerCert:
    """A server certificate for ``hosts`` (names and IP addresses, all in its SAN: clients
    check the host they connect to) signed by ``ca``."""
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    san = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={hosts[0]}", "-keyout", str(key), "-out", str(csr))
    ext = directory / "server.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(cert))
    keystore = directory / "server-keystore.pem"
    keystore.write_text(key.read_text() + cert.read_text())
    return ServerCert(ca=ca.cert, keystore=keystore)

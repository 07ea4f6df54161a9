"""Throw-away certificates for a TLS broker (tests): a CA and a server certificate it signs,
PEM files made with openssl, the form Kafka reads with ``ssl.keystore.type=PEM``."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerCert:
    ca: Path  # the CA's certificate: what clients trust
    keystore: Path  # the server's unencrypted PKCS#8 key, then its certificate


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise RuntimeError("`openssl` not found: install it, e.g. `apt-get install -y openssl`")
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed CA (``<name>-ca.key``, ``<name>-ca.pem``); the certificate's path."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}-ca.key", directory / f"{name}-ca.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", str(key), "-out", str(cert))
    return cert


def make_server_cert(directory: Path, ca: Path, hosts: list[str]) -> ServerCert:
    """A server certificate for ``hosts`` (names and IP addresses, all in its SAN) signed by
    the CA ``make_ca`` wrote at ``ca``."""
    ca_key = ca.with_name(ca.name.replace("-ca.pem", "-ca.key"))
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={hosts[0]}", "-keyout", str(key), "-out", str(csr))
    ext = directory / "server.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(cert))
    keystore = directory / "server-keystore.pem"
    keystore.write_text(key.read_text() + cert.read_text())
    return ServerCert(ca=ca, keystore=keystore)

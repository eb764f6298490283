"""The server terminating TLS itself with its own certificate, and refusing plain HTTP
on a public address."""

from __future__ import annotations

import datetime
import ipaddress
import signal
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .harness import ENKAKU, LOGIN_PASSWORD, World, free_port, make_db, server_process

pytestmark = pytest.mark.e2e


def make_pki(tmp: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "enkaku test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


def test_session_over_tls_with_a_private_ca(tmp_path: Path) -> None:
    ca, cert, key = make_pki(tmp_path)
    world = World(tmp_path)
    port = free_port()
    try:
        db = make_db(tmp_path)
        server_process(
            world, db, port, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https"
        )
        # Without the CA the certificate is refused, with a message saying so.
        refused = subprocess.run(
            [ENKAKU, "login", "--server", world.server_url, "--user", "tech"],
            env=world.env(ENKAKU_LOGIN_PASSWORD=LOGIN_PASSWORD),
            capture_output=True,
            text=True,
            timeout=60,
        )
        world.login("--ca-file", str(ca))
        assert refused.returncode == 9 and "certificate" in refused.stderr.lower(), refused.stderr
        agent = world.agent(None, "agent", "allow", "--ca-file", str(ca))
        creds = agent.next_line(60, event="credentials")
        tech = world.connect(creds["agent_id"], creds["password"], "--ca-file", str(ca), vnc=False)
        tech.next_line(60, event="connected")
        tech.signal(signal.SIGINT)
        assert tech.wait(30) == 0
    finally:
        world.close()


def test_plain_http_on_a_public_address_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [ENKAKU, "server", "--host", "0.0.0.0", "--db", f"sqlite:///{tmp_path}/x.db"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--tls-cert" in result.stderr and "--behind-proxy" in result.stderr

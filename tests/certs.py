"""Certificates for the TLS tests: a CA, a server certificate for 127.0.0.1 and localhost, and
client certificates, as PEM files (made with the cryptography package, a test dependency)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pem:
    cert: Path  # the certificate (the chain: the certificate then the CA's)
    key: Path  # the private key, PKCS#8, unencrypted unless a password was given
    both: Path  # key then chain in one file (ssl.keystore.location with type PEM)


@dataclass(frozen=True)
class Certs:
    ca: Path
    server: Pem
    client: Pem  # subject CN=client,OU=test,O=kpy
    stranger: Pem  # signed by a different CA


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kpy"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    directory: Path,
    stem: str,
    cn: str,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    server: bool,
    password: bytes | None = None,
) -> Pem:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if server:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM
    )
    (directory / f"{stem}.crt").write_bytes(chain)
    (directory / f"{stem}.key").write_bytes(key_pem)
    (directory / f"{stem}.pem").write_bytes(key_pem + chain)
    return Pem(directory / f"{stem}.crt", directory / f"{stem}.key", directory / f"{stem}.pem")


def make_certs(directory: Path, key_password: str | None = None) -> Certs:
    """Write a CA, a server certificate (its key encrypted with ``key_password`` if given), a
    client certificate and one from another CA into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("kpy-test-ca")
    (directory / "ca.crt").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    password = key_password.encode() if key_password else None
    other = _ca("other-ca")
    return Certs(
        directory / "ca.crt",
        _leaf(directory, "server", "localhost", ca, True, password),
        _leaf(directory, "client", "client", ca, False),
        _leaf(directory, "stranger", "stranger", other, False),
    )

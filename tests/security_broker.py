"""A kpy with one listener of each security protocol, for the TLS and SASL tests.

Listeners: PLAINTEXT, SSL (client certificates required), SASL_PLAINTEXT and SASL_SSL with
PLAIN (users from the JAAS setting) and SCRAM-SHA-256/512 (credentials given at start with
--add-scram's setting, kpy.add.scram). Certificates come from tests/certs.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from certs import Certs, make_certs
from kpy_process import KpyProcess

PLAIN_USERS = {"alice": "alice-secret", "admin": "admin-secret"}
SCRAM_USERS = {"bob": "bob-secret", "carol": "carol-secret"}
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
REAUTH_MS = 3000
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def plain_jaas(users: dict[str, str]) -> str:
    options = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    return f"{PLAIN_MODULE} required {options};"


def secure_overrides(certs: Certs, **extra: str) -> dict[str, str]:
    jaas = plain_jaas(PLAIN_USERS)
    scram = ";".join(
        f"{m}=[name={user},password={password}]"
        for user, password in SCRAM_USERS.items()
        for m in ("SCRAM-SHA-256", "SCRAM-SHA-512")
    )
    return {
        "listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,"
        "SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        "sasl.enabled.mechanisms": ",".join(MECHANISMS),
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.server.both),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca),
        "listener.name.ssl.ssl.client.auth": "required",
        "kpy.add.scram": scram,
        # Short sessions, so that every client here re-authenticates (KIP-368) as it goes.
        "connections.max.reauth.ms": str(REAUTH_MS),
        **extra,
    }


@dataclass
class SecureBroker:
    proc: KpyProcess
    certs: Certs

    @property
    def plaintext(self) -> str:
        return f"127.0.0.1:{self.proc.ports[0]}"

    @property
    def ssl(self) -> str:
        return f"127.0.0.1:{self.proc.ports[1]}"

    @property
    def sasl_plaintext(self) -> str:
        return f"127.0.0.1:{self.proc.ports[2]}"

    @property
    def sasl_ssl(self) -> str:
        return f"127.0.0.1:{self.proc.ports[3]}"

    def bootstrap(self, protocol: str) -> str:
        return {
            "PLAINTEXT": self.plaintext,
            "SSL": self.ssl,
            "SASL_PLAINTEXT": self.sasl_plaintext,
            "SASL_SSL": self.sasl_ssl,
        }[protocol]


def start_secure_broker(directory: Path, **extra: str) -> SecureBroker:
    certs = make_certs(directory / "certs")
    proc = KpyProcess(directory / "data", secure_overrides(certs, **extra)).start()
    return SecureBroker(proc, certs)

"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): the credentials kpy keeps and the
server side of the exchange, as Kafka's ScramSaslServer and ScramControlManager.

Credentials are what Kafka's UserScramCredentialRecord holds (salt, stored key, server key,
iterations; never a password), per user and mechanism. AlterUserScramCredentials (kafka-configs
--alter --add-config 'SCRAM-SHA-256=[password=...]') sends a salt and a salted password; kpy
derives the keys as Kafka's controller does and keeps them in ``kpy-scram-credentials.json`` in
the data directory (in memory with kpy.storage.in.memory), where Kafka keeps them in its
metadata log. ``kpy --add-scram`` seeds them at start, as ``kafka-storage format --add-scram``.

The exchange is written here by hand with hashlib and hmac: the maintained Python SCRAM library
(scramp) SASLprep-normalises user names, which Kafka does not, leaves the "=2C"/"=3D" escapes of
a name in place, ignores the authorization id, and answers a failed proof with a server-final
"e=" message where Kafka fails the SASL exchange with SASL_AUTHENTICATION_FAILED.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from kpy.storage.fs import FileSystem

log = logging.getLogger("kpy.scram")

CREDENTIALS_FILE = "kpy-scram-credentials.json"

# Kafka's org.apache.kafka.clients.admin.ScramMechanism type codes.
MECHANISMS = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
MECHANISM_CODES = {name: code for code, name in MECHANISMS.items()}
_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MIN_ITERATIONS = 4096  # both mechanisms' minIterations
MAX_ITERATIONS = 16384  # ScramControlManager.MAX_ITERATIONS
DEFAULT_ITERATIONS = 4096  # what kafka-configs and kafka-storage use without iterations=


class AuthenticationFailed(Exception):
    """The exchange failed. ``public`` is True where Kafka sends the message itself to the
    client (a SaslAuthenticationException); otherwise the client gets Kafka's generic message."""

    def __init__(self, message: str, public: bool = False) -> None:
        super().__init__(message)
        self.public = public


@dataclass(frozen=True)
class Credential:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


def _hmac(hash_name: str, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hash_name).digest()


def credential_from_salted_password(
    mechanism: str, salt: bytes, salted_password: bytes, iterations: int
) -> Credential:
    """The stored and server keys of a salted password (Kafka's ScramFormatter)."""
    h = _HASHES[mechanism]
    client_key = _hmac(h, salted_password, b"Client Key")
    stored_key = hashlib.new(h, client_key).digest()
    server_key = _hmac(h, salted_password, b"Server Key")
    return Credential(salt, stored_key, server_key, iterations)


def credential_from_password(
    mechanism: str, password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> Credential:
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac(_HASHES[mechanism], password.encode(), salt, iterations)
    return credential_from_salted_password(mechanism, salt, salted, iterations)


class CredentialStore:
    """The SCRAM credentials, durable in the data directory (loop-only; written synchronously,
    a few hundred bytes per user, as the other admin state files are)."""

    def __init__(self, data_dir: Path, fs: FileSystem) -> None:
        self._path = data_dir / CREDENTIALS_FILE
        self._fs = fs
        self._credentials: dict[str, dict[str, Credential]] = {}  # user -> mechanism -> it
        if fs.exists(self._path):
            saved = json.loads(fs.read_text(self._path))
            for user, mechanisms in saved.get("users", {}).items():
                for mechanism, c in mechanisms.items():
                    self._credentials.setdefault(user, {})[mechanism] = Credential(
                        base64.b64decode(c["salt"]),
                        base64.b64decode(c["stored_key"]),
                        base64.b64decode(c["server_key"]),
                        int(c["iterations"]),
                    )

    def get(self, user: str, mechanism: str) -> Credential | None:
        return self._credentials.get(user, {}).get(mechanism)

    def users(self) -> list[str]:
        return list(self._credentials)

    def mechanisms(self, user: str) -> dict[str, Credential]:
        return dict(self._credentials.get(user, {}))

    def apply(
        self, deletions: list[tuple[str, str]], upserts: list[tuple[str, str, Credential]]
    ) -> None:
        """Delete (user, mechanism) and upsert (user, mechanism, credential), then save."""
        for user, mechanism in deletions:
            mechanisms = self._credentials.get(user, {})
            mechanisms.pop(mechanism, None)
            if not mechanisms:
                self._credentials.pop(user, None)
        for user, mechanism, credential in upserts:
            self._credentials.setdefault(user, {})[mechanism] = credential
        self._save()

    def _save(self) -> None:
        data = {
            "version": 1,
            "users": {
                user: {
                    mechanism: {
                        "salt": base64.b64encode(c.salt).decode(),
                        "stored_key": base64.b64encode(c.stored_key).decode(),
                        "server_key": base64.b64encode(c.server_key).decode(),
                        "iterations": c.iterations,
                    }
                    for mechanism, c in mechanisms.items()
                }
                for user, mechanisms in self._credentials.items()
            },
        }
        self._fs.write_atomic(self._path, json.dumps(data, indent=1).encode())


_ADD_SCRAM = re.compile(r"^\s*(SCRAM-SHA-(?:256|512))\s*=\s*\[(.*)\]\s*$")


def parse_add_scram(text: str) -> tuple[str, str, Credential]:
    """One ``--add-scram`` argument, as kafka-storage format takes it:
    ``SCRAM-SHA-256=[name=alice,password=alice-secret]`` (optionally iterations=, salt=
    (base64) or saltedpassword= (base64) instead of password=). ValueError when malformed."""
    match = _ADD_SCRAM.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not SCRAM-SHA-256=[name=...,password=...] or SCRAM-SHA-512=[...]"
        )
    mechanism = match.group(1)
    fields: dict[str, str] = {}
    for item in match.group(2).split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{text!r}: {item!r} is not key=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        fields[key.strip().lower()] = value
    name = fields.get("name")
    if not name:
        raise ValueError(f"{text!r}: name= is missing")
    iterations = int(fields.get("iterations", DEFAULT_ITERATIONS))
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"{text!r}: iterations must be {MIN_ITERATIONS} to {MAX_ITERATIONS}")
    salt = base64.b64decode(fields["salt"]) if "salt" in fields else None
    if "saltedpassword" in fields:
        if salt is None:
            raise ValueError(f"{text!r}: saltedpassword= needs salt=")
        salted = base64.b64decode(fields["saltedpassword"])
        return name, mechanism, credential_from_salted_password(mechanism, salt, salted, iterations)
    if "password" not in fields:
        raise ValueError(f"{text!r}: password= (or saltedpassword=) is missing")
    return (
        name,
        mechanism,
        credential_from_password(mechanism, fields["password"], iterations, salt),
    )


def _username(saslname: str) -> str:
    """RFC 5802's saslname: "=2C" is a comma and "=3D" an equals sign; any other "=" is bad."""
    if re.search(r"=(?!2C|3D)", saslname):
        raise AuthenticationFailed("Invalid user name encoding")
    return saslname.replace("=2C", ",").replace("=3D", "=")


_CLIENT_FIRST = re.compile(
    r"n,(?:a=(?P<authzid>[^,]*))?,n=(?P<saslname>[^,]*),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)"
    r"(?P<extensions>(?:,[A-Za-z]+=[\x01-\x2b\x2d-\x7f]*)*)"
)
_CLIENT_FINAL = re.compile(
    r"c=(?P<binding>[A-Za-z0-9+/=]+),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)"
    r"(?P<extensions>(?:,[A-Za-z]+=[\x01-\x2b\x2d-\x7f]*)*),p=(?P<proof>[A-Za-z0-9+/=]+)"
)


class ScramServer:
    """One SCRAM exchange on the server side (Kafka's ScramSaslServer): ``evaluate`` takes
    each client message and returns the server's answer; ``complete`` after the second."""

    def __init__(self, mechanism: str, store: CredentialStore) -> None:
        self.mechanism = mechanism
        self._hash = _HASHES[mechanism]
        self._store = store
        self._state = 0  # 0: waiting for client-first, 1: for client-final, 2: done
        self.authorization_id = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._credential: Credential | None = None

    @property
    def complete(self) -> bool:
        return self._state == 2

    def evaluate(self, token: bytes) -> bytes:
        try:
            message = token.decode()
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid SCRAM message encoding") from None
        if self._state == 0:
            return self._client_first(message)
        if self._state == 1:
            return self._client_final(message)
        raise AuthenticationFailed("Unexpected challenge in Sasl server state COMPLETE")

    def _client_first(self, message: str) -> bytes:
        match = _CLIENT_FIRST.fullmatch(message)
        if match is None:
            raise AuthenticationFailed("Invalid SCRAM client first message")
        self._state = -1  # any failure from here on ends the exchange
        username = _username(match.group("saslname"))
        credential = self._store.get(username, self.mechanism)
        if credential is None:
            raise AuthenticationFailed("Authentication failed: Invalid user credentials")
        authzid = match.group("authzid") or ""
        if authzid and authzid != username:
            raise AuthenticationFailed(
                "Authentication failed: Client requested an authorization id that is "
                "different from username",
                public=True,
            )
        if credential.iterations < MIN_ITERATIONS:
            raise AuthenticationFailed(
                f"Iterations {credential.iterations} is less than the minimum "
                f"{MIN_ITERATIONS} for {self.mechanism}"
            )
        self.authorization_id = username
        self._credential = credential
        self._client_first_bare = message[message.index(",", 2) + 1 :]
        self._nonce = match.group("nonce") + secrets.token_urlsafe(24)
        salt = base64.b64encode(credential.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={credential.iterations}"
        self._state = 1
        return self._server_first.encode()

    def _client_final(self, message: str) -> bytes:
        self._state = -1
        match = _CLIENT_FINAL.fullmatch(message)
        if match is None:
            raise AuthenticationFailed("Invalid SCRAM client final message")
        if match.group("nonce") != self._nonce:
            raise AuthenticationFailed("Invalid client nonce in the final client message.")
        credential = self._credential
        assert credential is not None
        without_proof = message[: message.rindex(",p=")]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        try:
            proof = base64.b64decode(match.group("proof"), validate=True)
        except ValueError:
            raise AuthenticationFailed("Invalid client credentials") from None
        signature = _hmac(self._hash, credential.stored_key, auth_message)
        if len(proof) != len(signature):
            raise AuthenticationFailed("Invalid client credentials")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(
            hashlib.new(self._hash, client_key).digest(), credential.stored_key
        ):
            raise AuthenticationFailed("Invalid client credentials")
        server_signature = _hmac(self._hash, credential.server_key, auth_message)
        self._credential = None
        self._state = 2
        return b"v=" + base64.b64encode(server_signature)

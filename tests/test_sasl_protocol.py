"""The SASL exchange byte by byte, as Kafka's SaslServerAuthenticator runs it: what may come
before authentication, SaslHandshake v0's bare tokens, the failure answers and closes, the
receive limit, and re-authentication with connections.max.reauth.ms. A raw socket client sends
exactly what each case needs; the SCRAM client side is computed here from RFC 5802."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest
from kio.schema.sasl_authenticate.v1.request import SaslAuthenticateRequest as SaslAuthV1
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v0.request import SaslHandshakeRequest as HandshakeV0
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest
from kpy_process import KpyProcess
from rawclient import RawClient
from security_broker import PLAIN_USERS, plain_jaas

pytestmark = pytest.mark.timeout(120)

REAUTH_MS = 3000


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KpyProcess]:
    """SASL_PLAINTEXT (PLAIN and SCRAM-SHA-256, sessions of REAUTH_MS) and PLAINTEXT."""
    jaas = plain_jaas(PLAIN_USERS)
    proc = KpyProcess(
        tmp_path_factory.mktemp("sasl") / "data",
        {
            "listeners": "SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
            "listener.name.sasl_plaintext.connections.max.reauth.ms": str(REAUTH_MS),
            "kpy.add.scram": "SCRAM-SHA-256=[name=bob,password=bob-secret]",
            "sasl.server.max.receive.size": "4096",
        },
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


def sasl(proc: KpyProcess) -> RawClient:
    return RawClient(f"127.0.0.1:{proc.ports[0]}")


def plaintext(proc: KpyProcess) -> RawClient:
    return RawClient(f"127.0.0.1:{proc.ports[1]}")


def plain_token(user: str, password: str, authzid: str = "") -> bytes:
    return f"{authzid}\0{user}\0{password}".encode()


def metadata_ok(client: RawClient) -> bool:
    response = client.request(
        MetadataRequest(
            topics=(), allow_auto_topic_creation=False, include_topic_authorized_operations=False
        )
    )
    return len(response.brokers) == 1


def login_plain(client: RawClient, user: str = "alice") -> object:
    handshake = client.request(SaslHandshakeRequest(mechanism="PLAIN"))
    assert handshake.error_code == ErrorCode.none
    response = client.request(
        SaslAuthenticateRequest(auth_bytes=plain_token(user, PLAIN_USERS[user]))
    )
    assert response.error_code == ErrorCode.none, response.error_message
    return response


def test_api_versions_handshake_and_authenticate(broker: KpyProcess) -> None:
    with sasl(broker) as client:
        versions = client.request(
            ApiVersionsRequest(client_software_name="raw", client_software_version="1")
        )
        keys = {k.api_key for k in versions.api_keys}
        assert {17, 36, 50, 51} <= keys
        handshake = client.request(SaslHandshakeRequest(mechanism="PLAIN"))
        assert handshake.error_code == ErrorCode.none
        assert tuple(handshake.mechanisms) == ("PLAIN", "SCRAM-SHA-256")
        response = client.request(
            SaslAuthenticateRequest(auth_bytes=plain_token("alice", "alice-secret"))
        )
        assert response.error_code == ErrorCode.none
        assert response.error_message is None
        assert response.session_lifetime == timedelta(milliseconds=REAUTH_MS)
        assert metadata_ok(client)
        # After authentication, SaslAuthenticate is an illegal state (KafkaApis).
        again = client.request(SaslAuthenticateRequest(auth_bytes=b"x"))
        assert again.error_code == ErrorCode.illegal_sasl_state


def test_a_request_before_authentication_closes_the_connection(broker: KpyProcess) -> None:
    with sasl(broker) as client:
        client.send(
            MetadataRequest(
                topics=(),
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
        assert client.is_closed_by_peer()


def test_an_unsupported_mechanism_is_answered_then_closed(broker: KpyProcess) -> None:
    with sasl(broker) as client:
        response = client.request(SaslHandshakeRequest(mechanism="GSSAPI"))
        assert response.error_code == ErrorCode.unsupported_sasl_mechanism
        assert tuple(response.mechanisms) == ("PLAIN", "SCRAM-SHA-256")
        assert client.is_closed_by_peer()


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (plain_token("alice", "wrong"), "Authentication failed: Invalid username or password"),
        (plain_token("nobody", "x"), "Authentication failed: Invalid username or password"),
        (plain_token("", "x"), "Authentication failed: username not specified"),
        (plain_token("alice", ""), "Authentication failed: password not specified"),
        (
            plain_token("alice", "alice-secret", authzid="admin"),
            "Authentication failed: Client requested an authorization id that is different "
            "from username",
        ),
        (b"alice\0alice-secret", "Invalid SASL/PLAIN response: expected 3 tokens, got 2"),
    ],
)
def test_plain_failures_answer_kafkas_message_then_close(
    broker: KpyProcess, token: bytes, message: str
) -> None:
    with sasl(broker) as client:
        assert client.request(SaslHandshakeRequest(mechanism="PLAIN")).error_code == 0
        response = client.request(SaslAuthenticateRequest(auth_bytes=token))
        assert response.error_code == ErrorCode.sasl_authentication_failed
        assert response.error_message == message
        assert client.is_closed_by_peer()


def test_a_request_other_than_sasl_authenticate_during_authentication(broker: KpyProcess) -> None:
    with sasl(broker) as client:
        assert client.request(SaslHandshakeRequest(mechanism="PLAIN")).error_code == 0
        response = client.request(
            MetadataRequest(
                topics=(),
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
        assert all(t.error_code == ErrorCode.illegal_sasl_state for t in response.topics)
        assert client.is_closed_by_peer()


def test_handshake_v0_exchanges_bare_tokens(broker: KpyProcess) -> None:
    with sasl(broker) as client:
        assert client.request(HandshakeV0(mechanism="PLAIN")).error_code == ErrorCode.none
        token = plain_token("alice", "alice-secret")
        client.send_bytes(len(token).to_bytes(4, "big") + token)
        assert client.recv_exact(4) == b"\0\0\0\0"  # PLAIN's empty answer, size-prefixed
        assert metadata_ok(client)


def test_handshake_v0_failure_closes_without_an_answer(broker: KpyProcess) -> None:
    with sasl(broker) as client:
        assert client.request(HandshakeV0(mechanism="PLAIN")).error_code == ErrorCode.none
        token = plain_token("alice", "nope")
        client.send_bytes(len(token).to_bytes(4, "big") + token)
        assert client.is_closed_by_peer()


def test_frames_before_authentication_are_limited(broker: KpyProcess) -> None:
    with sasl(broker) as client:
        client.send_bytes((4097).to_bytes(4, "big") + b"\0" * 16)
        assert client.is_closed_by_peer()


def test_sasl_requests_on_a_plaintext_listener_are_illegal(broker: KpyProcess) -> None:
    with plaintext(broker) as client:
        response = client.request(SaslHandshakeRequest(mechanism="PLAIN"))
        assert response.error_code == ErrorCode.illegal_sasl_state
        assert tuple(response.mechanisms) == ()
        assert metadata_ok(client)


# --- SCRAM, the client side from RFC 5802 ----------------------------------------------------


def scram_exchange(
    client: RawClient, user: str, password: str, nonce: str = "rOprNGfwEbeRWgbNEkqO"
) -> list[object]:
    """Run SCRAM-SHA-256 on ``client``; return the two SaslAuthenticate responses (the second
    is None if the first failed)."""
    assert client.request(SaslHandshakeRequest(mechanism="SCRAM-SHA-256")).error_code == 0
    first_bare = f"n={user},r={nonce}"
    first = client.request(SaslAuthenticateRequest(auth_bytes=f"n,,{first_bare}".encode()))
    if first.error_code != ErrorCode.none:
        return [first, None]
    server_first = bytes(first.auth_bytes).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    assert fields["r"].startswith(nonce) and len(fields["r"]) > len(nonce)
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    final = client.request(
        SaslAuthenticateRequest(auth_bytes=f"{without_proof},p={proof.decode()}".encode())
    )
    if final.error_code == ErrorCode.none:
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        expected = hmac.new(server_key, auth_message, "sha256").digest()
        assert bytes(final.auth_bytes) == b"v=" + base64.b64encode(expected)
    return [first, final]


def test_scram_sha_256_exchange_and_server_signature(broker: KpyProcess) -> None:
    with sasl(broker) as client:
        _first, final = scram_exchange(client, "bob", "bob-secret")
        assert final is not None and final.error_code == ErrorCode.none  # type: ignore[attr-defined]
        assert metadata_ok(client)


def test_scram_wrong_password_and_unknown_user(broker: KpyProcess) -> None:
    generic = (
        "Authentication failed during authentication due to invalid credentials with SASL "
        "mechanism SCRAM-SHA-256"
    )
    with sasl(broker) as client:
        _, final = scram_exchange(client, "bob", "wrong")
        assert final.error_code == ErrorCode.sasl_authentication_failed  # type: ignore[attr-defined]
        assert final.error_message == generic  # type: ignore[attr-defined]
        assert client.is_closed_by_peer()
    with sasl(broker) as client:
        first, _ = scram_exchange(client, "mallory", "x")
        assert first.error_code == ErrorCode.sasl_authentication_failed  # type: ignore[attr-defined]
        assert first.error_message == generic  # type: ignore[attr-defined]


# --- Re-authentication -----------------------------------------------------------------------


def test_a_request_after_the_session_expires_closes_the_connection(broker: KpyProcess) -> None:
    with sasl(broker) as client:
        login_plain(client)
        assert metadata_ok(client)
        time.sleep(REAUTH_MS / 1000 + 0.5)
        client.send(
            MetadataRequest(
                topics=(),
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
        assert client.is_closed_by_peer()


def test_reauthentication_extends_the_session(broker: KpyProcess) -> None:
    with sasl(broker) as client:
        login_plain(client)
        time.sleep(REAUTH_MS / 1000 * 0.6)
        again = login_plain(client)  # a SaslHandshake on an authenticated connection
        assert again.session_lifetime == timedelta(milliseconds=REAUTH_MS)  # type: ignore[attr-defined]
        time.sleep(REAUTH_MS / 1000 * 0.6)  # past the first session's end
        assert metadata_ok(client)


def test_reauthentication_may_not_change_the_principal(broker: KpyProcess) -> None:
    with sasl(broker) as client:
        login_plain(client, "alice")
        time.sleep(1.1)  # Kafka ignores a re-authentication within a second of the last
        assert client.request(SaslHandshakeRequest(mechanism="PLAIN")).error_code == 0
        response = client.request(SaslAuthV1(auth_bytes=plain_token("admin", "admin-secret")))
        assert response.error_code == ErrorCode.sasl_authentication_failed
        assert response.error_message == (
            "Cannot change principals during re-authentication from User:alice: User:admin"
        )
        assert client.is_closed_by_peer()


def test_no_reauthentication_without_a_session_lifetime(tmp_path: Path) -> None:
    """Without connections.max.reauth.ms a SaslHandshake after authentication is an ordinary
    request, answered ILLEGAL_SASL_STATE, and the session never expires."""
    proc = KpyProcess(
        tmp_path / "data",
        {
            "listeners": "SASL_PLAINTEXT://127.0.0.1:0",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": plain_jaas(PLAIN_USERS),
        },
    ).start()
    try:
        with RawClient(proc.bootstrap) as client:
            response = login_plain(client)
            assert response.session_lifetime == timedelta(0)  # type: ignore[attr-defined]
            handshake = client.request(SaslHandshakeRequest(mechanism="PLAIN"))
            assert handshake.error_code == ErrorCode.illegal_sasl_state
            assert metadata_ok(client)
    finally:
        proc.stop()

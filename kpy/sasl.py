"""SASL authentication of connections on SASL_PLAINTEXT and SASL_SSL listeners, as Kafka's
SaslServerAuthenticator: mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.

A connection on a SASL listener starts unauthenticated. It may send ApiVersions (once, first),
then SaslHandshake naming an enabled mechanism; from SaslHandshake v1 the mechanism's tokens
come in SaslAuthenticate requests, with v0 as bare size-prefixed tokens. Anything else before
authentication completes closes the connection, as in Kafka. A failed authentication is
answered with SASL_AUTHENTICATION_FAILED (or UNSUPPORTED_SASL_MECHANISM) and the connection
closed after connection.failed.authentication.delay.ms. Until then frames may not exceed
sasl.server.max.receive.size.

With connections.max.reauth.ms set, SaslAuthenticate v1+ tells the client its session's
lifetime; a request after it closes the connection, and a SaslHandshake before it begins
re-authentication on the same connection (same mechanism, same principal, as Kafka).

Settings, as Kafka's broker reads them: sasl.enabled.mechanisms (per listener:
listener.name.<listener>.sasl.enabled.mechanisms), and for PLAIN the users of
listener.name.<listener>.plain.sasl.jaas.config (PlainLoginModule's user_<name>="<password>"
options). SCRAM credentials come from kpy.scram's store. Passwords and tokens are never logged.

The JAAS configuration parser is written by hand: Kafka's format (JaasConfig) has no Python
implementation.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from kpy.config import BrokerConfig, ConfigError
from kpy.protocol.messages import (
    ProtocolError,
    decode_request,
    encode_response,
    make,
    parse_header,
    response_module,
)
from kpy.scram import MECHANISM_CODES, AuthenticationFailed, ScramServer
from kpy.tls import listener_setting

if TYPE_CHECKING:
    from kpy.broker import Broker

log = logging.getLogger("kpy.sasl")

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
SUPPORTED = ("PLAIN", *MECHANISM_CODES)
_PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


# --- JAAS configuration --------------------------------------------------------------------

_JAAS_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^\s=;"]+)|(=)|(;))', re.S)


@dataclass(frozen=True)
class LoginModule:
    name: str
    flag: str
    options: dict[str, str]


def parse_jaas(text: str) -> list[LoginModule]:
    """A sasl.jaas.config value: ``<module class> <flag> key="value" ...;`` for each module
    (Kafka's JaasConfig). ValueError when malformed."""
    tokens: list[tuple[str, bool]] = []  # (text, quoted)
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _JAAS_TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"unexpected {text[pos : pos + 20]!r}")
        pos = match.end()
        quoted, word, equals, semicolon = match.groups()
        if quoted is not None:
            tokens.append((re.sub(r"\\(.)", r"\1", quoted), True))
        else:
            tokens.append((word or equals or semicolon, False))
        while pos < len(text) and text[pos].isspace():
            pos += 1
    modules = []
    i = 0
    while i < len(tokens):
        if i + 1 >= len(tokens):
            raise ValueError("a login module needs a class name and a control flag")
        name, flag = tokens[i][0], tokens[i + 1][0].lower()
        if flag not in ("required", "requisite", "sufficient", "optional"):
            raise ValueError(f"invalid control flag {tokens[i + 1][0]!r}")
        i += 2
        options: dict[str, str] = {}
        while i < len(tokens) and tokens[i] != (";", False):
            if i + 2 >= len(tokens) or tokens[i + 1] != ("=", False):
                raise ValueError(f"option {tokens[i][0]!r} is not key=value")
            options[tokens[i][0]] = tokens[i + 2][0]
            i += 3
        if i >= len(tokens):
            raise ValueError("a login module must end with ';'")
        i += 1
        modules.append(LoginModule(name, flag, options))
    if not modules:
        raise ValueError("no login module")
    return modules


# --- Per-listener settings -----------------------------------------------------------------


@dataclass(frozen=True)
class SaslSettings:
    listener: str
    mechanisms: tuple[str, ...]
    plain_users: dict[str, str] = field(repr=False)
    reauth_ms: int
    max_receive_size: int
    failure_delay_s: float

    @classmethod
    def load(cls, config: BrokerConfig, listener: str) -> SaslSettings:
        """The SASL settings of ``listener``; ConfigError where Kafka would not start, or where
        a mechanism is one kpy does not serve (GSSAPI, OAUTHBEARER)."""
        mechanisms = tuple(
            m.strip().upper()
            for m in listener_setting(config, listener, "sasl.enabled.mechanisms").split(",")
            if m.strip()
        )
        if not mechanisms:
            raise ConfigError(f"listener {listener}: sasl.enabled.mechanisms is empty")
        unsupported = [m for m in mechanisms if m not in SUPPORTED]
        if unsupported:
            raise ConfigError(
                f"listener {listener}: sasl.enabled.mechanisms names {', '.join(unsupported)}; "
                f"kpy serves {', '.join(SUPPORTED)} (set sasl.enabled.mechanisms, whose default "
                "in Kafka is GSSAPI)"
            )
        plain_users: dict[str, str] = {}
        if "PLAIN" in mechanisms:
            key = f"listener.name.{listener.lower()}.plain.sasl.jaas.config"
            text = config.props.get(key, "")
            if not text:
                raise ConfigError(
                    f"listener {listener} enables PLAIN but {key} is not set (a "
                    f'{_PLAIN_MODULE} required user_<name>="<password>" ...; line)'
                )
            try:
                modules = parse_jaas(text)
            except ValueError as e:
                raise ConfigError(f"{key}: {e}") from None
            for module in modules:
                if module.name != _PLAIN_MODULE:
                    raise ConfigError(f"{key}: login module {module.name} is not {_PLAIN_MODULE}")
                for option, value in module.options.items():
                    if option.startswith("user_"):
                        plain_users[option[5:]] = value
        reauth_ms = int(listener_setting(config, listener, "connections.max.reauth.ms") or 0)
        return cls(
            listener,
            mechanisms,
            plain_users,
            reauth_ms,
            config.get_int("sasl.server.max.receive.size"),
            config.get_int("connection.failed.authentication.delay.ms") / 1000,
        )


# --- Mechanisms ----------------------------------------------------------------------------


class PlainServer:
    """SASL/PLAIN (RFC 4616) against the JAAS users, as Kafka's PlainSaslServer."""

    mechanism = "PLAIN"

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users
        self.authorization_id = ""
        self.complete = False

    def evaluate(self, token: bytes) -> bytes:
        parts = token.decode("utf-8", "replace").split("\0", 3)
        if len(parts) != 3:
            raise AuthenticationFailed(
                f"Invalid SASL/PLAIN response: expected 3 tokens, got {min(len(parts), 4)}",
                public=True,
            )
        authzid, username, password = parts
        if not username:
            raise AuthenticationFailed("Authentication failed: username not specified", True)
        if not password:
            raise AuthenticationFailed("Authentication failed: password not specified", True)
        expected = self._users.get(username)
        if expected is None or not _equal(expected, password):
            raise AuthenticationFailed(
                "Authentication failed: Invalid username or password", public=True
            )
        if authzid and authzid != username:
            raise AuthenticationFailed(
                "Authentication failed: Client requested an authorization id that is "
                "different from username",
                public=True,
            )
        self.authorization_id = username
        self.complete = True
        return b""


def _equal(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


# --- The connection's state ----------------------------------------------------------------


def _api_versions_ok(response: bytes | None) -> bool:
    """Whether an ApiVersions response (size, correlation id, then the error code) is no error."""
    return response is not None and len(response) >= 10 and response[8:10] == b"\0\0"


class State(Enum):
    INITIAL = "INITIAL"  # nothing received yet
    HANDSHAKE_OR_VERSIONS = "HANDSHAKE_OR_VERSIONS"  # a Kafka request came; ApiVersions may
    HANDSHAKE = "HANDSHAKE"  # ApiVersions answered; SaslHandshake next
    AUTHENTICATE = "AUTHENTICATE"  # the mechanism's tokens
    REAUTH_BAD_MECHANISM = "REAUTH_BAD_MECHANISM"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


class CloseAfter(Exception):
    """The authentication failed: end the connection after sending ``response`` (if any),
    connection.failed.authentication.delay.ms later (Kafka delays every such close)."""

    def __init__(self, reason: str, response: bytes | None = None) -> None:
        super().__init__(reason)
        self.response = response


_MIN_REAUTH_INTERVAL_S = 1.0  # KafkaChannel.MIN_REAUTH_INTERVAL_ONE_SECOND_NANOS


class Authenticator:
    """The SASL state of one connection. ``receive`` takes each frame until ``complete``;
    it returns the bytes to send back (or None) and raises CloseAfter to end the connection."""

    def __init__(self, broker: Broker, settings: SaslSettings, peer: str) -> None:
        self._broker = broker
        self._settings = settings
        self._peer = peer
        self.state = State.INITIAL
        self.principal = ""
        self._mechanism = ""
        self._server: PlainServer | ScramServer | None = None
        self._kafka_headers = False  # SaslHandshake v1+: tokens in SaslAuthenticate requests
        self._reauthenticating = False
        self._last_reauth_start = 0.0
        self.session_expiry: float | None = None  # time.monotonic() after which it is expired

    @property
    def complete(self) -> bool:
        return self.state is State.COMPLETE

    @property
    def max_frame(self) -> int:
        return self._settings.max_receive_size

    @property
    def failure_delay(self) -> float:
        return self._settings.failure_delay_s

    def expired(self, now: float) -> bool:
        return self.session_expiry is not None and now > self.session_expiry

    def begin_reauthentication(self, now: float) -> bool:
        """A SaslHandshake arrived on an authenticated connection: True if it starts
        re-authentication (the session has a lifetime and the last one began over a second
        ago), as KafkaChannel.maybeBeginServerReauthentication; else it is an ordinary request."""
        if self.session_expiry is None or now - self._last_reauth_start < _MIN_REAUTH_INTERVAL_S:
            return False
        self._last_reauth_start = now
        self._reauthenticating = True
        self.state = State.HANDSHAKE
        self._server = None
        return True

    async def receive(self, frame: bytes) -> bytes | None:
        try:
            if self.state in (State.INITIAL, State.HANDSHAKE_OR_VERSIONS, State.HANDSHAKE):
                return await self._kafka_request(frame)
            if self.state is State.REAUTH_BAD_MECHANISM:
                raise CloseAfter("re-authentication with a different mechanism")
            if self.state is State.AUTHENTICATE:
                return self._token(frame)
            raise CloseAfter(f"request in SASL state {self.state.value}")
        except CloseAfter:
            self.state = State.FAILED
            raise

    async def _kafka_request(self, frame: bytes) -> bytes | None:
        try:
            header = parse_header(frame)
        except ProtocolError:
            # Kafka takes an unparseable first packet for a GSSAPI token from an old client.
            raise CloseAfter(
                "the first packet is not a Kafka request (GSSAPI is not served)"
            ) from None
        if self.state is State.INITIAL:
            self.state = State.HANDSHAKE_OR_VERSIONS
        if header.api_key not in (API_VERSIONS, SASL_HANDSHAKE):
            raise CloseAfter(
                f"unexpected request of API key {header.api_key} during SASL handshake"
            )
        if header.api_key == API_VERSIONS:
            if self.state is not State.HANDSHAKE_OR_VERSIONS:
                raise CloseAfter("unexpected ApiVersions request during SASL authentication")
            response = await self._broker.dispatch(frame, self._peer, self._settings.listener)
            if _api_versions_ok(response):  # else the client may ask again at another version
                self.state = State.HANDSHAKE
            return response
        if not 0 <= header.api_version <= 1:
            raise CloseAfter(f"SaslHandshake v{header.api_version} is not served")
        request = decode_request(header, frame)
        mechanism = request.mechanism
        self._kafka_headers = header.api_version >= 1
        mod = response_module(SASL_HANDSHAKE, header.api_version)
        enabled = self._settings.mechanisms
        if mechanism not in enabled:
            response = make(
                mod.SaslHandshakeResponse,
                error_code=ErrorCode.unsupported_sasl_mechanism,
                mechanisms=enabled,
            )
            raise CloseAfter(
                f"unsupported SASL mechanism {mechanism}",
                encode_response(header, response),
            )
        answer = encode_response(
            header, make(mod.SaslHandshakeResponse, error_code=ErrorCode.none, mechanisms=enabled)
        )
        if self._reauthenticating and mechanism != self._mechanism:
            self.state = State.REAUTH_BAD_MECHANISM
            return answer
        self._mechanism = mechanism
        if mechanism == "PLAIN":
            self._server = PlainServer(self._settings.plain_users)
        else:
            self._server = ScramServer(mechanism, self._broker.scram)
        self.state = State.AUTHENTICATE
        return answer

    def _token(self, frame: bytes) -> bytes | None:
        server = self._server
        assert server is not None
        if not self._kafka_headers:
            try:
                answer = server.evaluate(frame)
                self._finish_if_complete(server)
            except AuthenticationFailed as e:
                log.info("authentication of %s with %s failed: %s", self._peer, self._mechanism, e)
                raise CloseAfter("authentication failed") from None
            return len(answer).to_bytes(4, "big") + answer
        header = parse_header(frame)
        if header.api_key != SASL_AUTHENTICATE:
            response = None
            from kpy.handlers.registry import REGISTRY, loaded

            reg = REGISTRY.get(header.api_key)
            if reg is not None and reg.min_version <= header.api_version <= reg.max_version:
                _, on_error = loaded(reg)
                if on_error is not None:
                    from kpy.broker import RequestContext

                    request = decode_request(header, frame)
                    ctx = RequestContext(self._broker, header, self._peer, self._settings.listener)
                    body = on_error(ctx, request, ErrorCode.illegal_sasl_state)
                    if body is not None:
                        response = encode_response(header, body)
            raise CloseAfter(
                f"unexpected request of API key {header.api_key} during SASL authentication",
                response,
            )
        if not 0 <= header.api_version <= 2:
            raise CloseAfter(f"SaslAuthenticate v{header.api_version} is not served")
        request = decode_request(header, frame)
        mod = response_module(SASL_AUTHENTICATE, header.api_version)
        try:
            answer = server.evaluate(bytes(request.auth_bytes))
            lifetime_ms = self._finish_if_complete(server)
        except AuthenticationFailed as e:
            log.info("authentication of %s with %s failed: %s", self._peer, self._mechanism, e)
            message = (
                str(e)
                if e.public
                else f"Authentication failed during {self._what()} due to invalid credentials "
                f"with SASL mechanism {self._mechanism}"
            )
            response = make(
                mod.SaslAuthenticateResponse,
                error_code=ErrorCode.sasl_authentication_failed,
                error_message=message,
                auth_bytes=b"",
                session_lifetime=0,
            )
            raise CloseAfter("authentication failed", encode_response(header, response)) from None
        response = make(
            mod.SaslAuthenticateResponse,
            error_code=ErrorCode.none,
            error_message=None,
            auth_bytes=answer,
            session_lifetime=lifetime_ms,
        )
        return encode_response(header, response)

    def _what(self) -> str:
        return "re-authentication" if self._reauthenticating else "authentication"

    def _finish_if_complete(self, server: PlainServer | ScramServer) -> int:
        """Once the mechanism completes: the principal, and the session lifetime (ms)."""
        if not server.complete:
            return 0
        principal = "User:" + server.authorization_id
        if self._reauthenticating and principal != self.principal:
            raise AuthenticationFailed(
                f"Cannot change principals during re-authentication from {self.principal}: "
                f"{principal}",
                public=True,
            )
        self.principal = principal
        self.state = State.COMPLETE
        self._reauthenticating = False
        lifetime_ms = max(self._settings.reauth_ms, 0)
        self.session_expiry = time.monotonic() + lifetime_ms / 1000 if lifetime_ms else None
        log.debug("%s authenticated as %s with %s", self._peer, principal, self._mechanism)
        return lifetime_ms

"""TLS for the SSL and SASL_SSL listeners: server contexts from Kafka's ssl.* settings, and the
principal of a client certificate.

The settings are Kafka's names, read per listener as Kafka does: ``listener.name.<listener>.<key>``
(the listener's name in lower case) before ``<key>``. Keystores and truststores are PEM, as
Kafka's ``ssl.keystore.type=PEM`` and ``ssl.truststore.type=PEM``: a file (``*.location``) or
the PEM text in the setting itself (``ssl.keystore.key`` with ``ssl.keystore.certificate.chain``,
``ssl.truststore.certificates``). JKS and PKCS12 stores are refused at start with a message
saying so: Python's ssl module reads PEM only, and so the same properties work on both brokers.

A client's principal on an SSL listener is its certificate's subject as Java's
``X500Principal.getName()`` writes it (RFC 2253: the most specific name first), mapped by
``ssl.principal.mapping.rules``; without a client certificate it is User:ANONYMOUS (Kafka's
DefaultKafkaPrincipalBuilder). Written here by hand: no library renders a subject as Java does,
and the mapping rules are Kafka's own.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kpy.config import BrokerConfig, ConfigError

SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
SECURITY_PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})

_TLS_VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def listener_setting(config: BrokerConfig, listener: str, key: str) -> str:
    """``key`` for ``listener``: the listener-prefixed setting first, as Kafka's
    ListenerName.configPrefix and KafkaConfig.valuesWithPrefixOverride."""
    prefixed = f"listener.name.{listener.lower()}.{key}"
    if prefixed in config.props:
        return config.props[prefixed]
    return config.get(key)


def security_protocol_map(config: BrokerConfig) -> dict[str, str]:
    """listener.security.protocol.map: listener name -> security protocol."""
    out: dict[str, str] = {}
    for item in filter(
        None, (v.strip() for v in config.get("listener.security.protocol.map").split(","))
    ):
        name, sep, protocol = item.partition(":")
        if not sep or protocol.strip().upper() not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"listener.security.protocol.map: {item!r} is not LISTENER:PROTOCOL with a "
                f"protocol of {', '.join(sorted(SECURITY_PROTOCOLS))}"
            )
        out[name.strip().upper()] = protocol.strip().upper()
    return out


def security_protocol(config: BrokerConfig, listener: str) -> str:
    protocol = security_protocol_map(config).get(listener.upper())
    if protocol is None:
        raise ConfigError(
            f"listener {listener} is not in listener.security.protocol.map "
            f"({config.get('listener.security.protocol.map')})"
        )
    return protocol


@contextlib.contextmanager
def _pem_file(text: str):  # type: ignore[no-untyped-def]
    """A private temporary file holding ``text`` (ssl loads keys and chains from files only)."""
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        yield path
    finally:
        os.unlink(path)


def _store_type(config: BrokerConfig, listener: str, key: str) -> None:
    kind = listener_setting(config, listener, key)
    if kind.upper() != "PEM":
        raise ConfigError(
            f"{key} is {kind}: kpy reads PEM stores only; set {key}=PEM with PEM files "
            "(Apache Kafka reads the same settings)"
        )


def server_context(config: BrokerConfig, listener: str) -> ssl.SSLContext:
    """The TLS context of an SSL or SASL_SSL listener; ConfigError on a bad setting."""

    def get(key: str) -> str:
        return listener_setting(config, listener, key)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    enabled = [p.strip() for p in get("ssl.enabled.protocols").split(",") if p.strip()]
    versions = [_TLS_VERSIONS[p] for p in enabled if p in _TLS_VERSIONS]
    if not versions:
        raise ConfigError(
            f"ssl.enabled.protocols ({get('ssl.enabled.protocols')}) names none of "
            f"{', '.join(_TLS_VERSIONS)}"
        )
    ctx.minimum_version = min(versions)
    ctx.maximum_version = max(versions)
    ciphers = get("ssl.cipher.suites").strip()
    if ciphers:
        try:
            ctx.set_ciphers(":".join(c.strip() for c in ciphers.split(",")))
        except ssl.SSLError as e:
            raise ConfigError(f"ssl.cipher.suites: {e}") from None

    password = get("ssl.key.password") or None
    location = get("ssl.keystore.location")
    key_pem = get("ssl.keystore.key")
    chain_pem = get("ssl.keystore.certificate.chain")
    try:
        if location:
            _store_type(config, listener, "ssl.keystore.type")
            ctx.load_cert_chain(location, password=password)
        elif key_pem and chain_pem:
            _store_type(config, listener, "ssl.keystore.type")
            with _pem_file(chain_pem + "\n" + key_pem) as path:
                ctx.load_cert_chain(path, password=password)
        else:
            raise ConfigError(
                f"listener {listener} uses TLS but has no keystore: set ssl.keystore.type=PEM "
                "and ssl.keystore.location (a PEM file with the private key and certificate "
                "chain), or ssl.keystore.key and ssl.keystore.certificate.chain"
            )
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"listener {listener}: the keystore could not be loaded: {e}") from None

    truststore = get("ssl.truststore.location")
    trusted = get("ssl.truststore.certificates")
    try:
        if truststore:
            _store_type(config, listener, "ssl.truststore.type")
            ctx.load_verify_locations(cafile=truststore)
        elif trusted:
            _store_type(config, listener, "ssl.truststore.type")
            ctx.load_verify_locations(cadata=trusted)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"listener {listener}: the truststore could not be loaded: {e}") from None

    client_auth = get("ssl.client.auth").strip().lower()
    if client_auth not in ("none", "requested", "required"):
        raise ConfigError(f"ssl.client.auth must be none, requested or required, not {client_auth}")
    if client_auth != "none" and not (truststore or trusted):
        raise ConfigError(
            f"listener {listener}: ssl.client.auth={client_auth} needs a truststore "
            "(ssl.truststore.location or ssl.truststore.certificates) to verify client certificates"
        )
    ctx.verify_mode = {
        "none": ssl.CERT_NONE,
        "requested": ssl.CERT_OPTIONAL,
        "required": ssl.CERT_REQUIRED,
    }[client_auth]
    return ctx


# --- The principal of a client certificate ------------------------------------------------

# The attribute keywords Java's X500Principal.getName() (RFC 2253) writes; others go by OID.
_KEYWORDS = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_OIDS = {
    "emailAddress": "1.2.840.113549.1.9.1",
    "serialNumber": "2.5.4.5",
    "title": "2.5.4.12",
    "surname": "2.5.4.4",
    "givenName": "2.5.4.42",
    "initials": "2.5.4.43",
    "generationQualifier": "2.5.4.44",
    "dnQualifier": "2.5.4.46",
    "pseudonym": "2.5.4.65",
    "postalCode": "2.5.4.17",
    "businessCategory": "2.5.4.15",
}
# The string type Java's RFC 2253 form encodes an attribute by OID with (its DER tag).
_IA5_STRING, _PRINTABLE_STRING, _UTF8_STRING = 0x16, 0x13, 0x0C
_OID_TAGS = {
    "emailAddress": _IA5_STRING,
    "dnQualifier": _PRINTABLE_STRING,
    "serialNumber": _PRINTABLE_STRING,
}


def _escape(value: str) -> str:
    """RFC 2253 escaping, as X500Principal writes it."""
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _der_hex(tag: int, value: str) -> str:
    data = value.encode()
    if len(data) < 0x80:
        length = bytes([len(data)])
    else:
        n = (len(data).bit_length() + 7) // 8
        length = bytes([0x80 | n]) + len(data).to_bytes(n, "big")
    return "#" + (bytes([tag]) + length + data).hex()


def subject_name(subject: Sequence[Sequence[tuple[str, str]]]) -> str:
    """The RFC 2253 name of a certificate subject as ``ssl.SSLSocket.getpeercert()`` gives it
    (a sequence of RDNs, each a sequence of (attribute, value)): most specific RDN first."""
    rdns = []
    for rdn in reversed(subject):
        parts = []
        for attribute, value in rdn:
            if attribute in _KEYWORDS:
                parts.append(f"{_KEYWORDS[attribute]}={_escape(value)}")
            elif attribute in _OIDS:
                tag = _OID_TAGS.get(attribute, _UTF8_STRING)
                parts.append(f"{_OIDS[attribute]}={_der_hex(tag, value)}")
            else:
                parts.append(f"{attribute}={_escape(value)}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


class NoMatchingRule(Exception):
    """No rule of ssl.principal.mapping.rules applies to a certificate's name."""


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str] | None  # None: DEFAULT
    replacement: str
    case: str  # "", "L" or "U"

    def apply(self, name: str) -> str | None:
        if self.pattern is None:
            return name
        if self.pattern.fullmatch(name) is None:
            return None
        groups = self.pattern.groups
        # Java's $n back references; one beyond the groups stays literal, as Kafka's mapper.
        replacement = re.sub(
            r"\$(\d+)",
            lambda m: f"\\g<{m.group(1)}>" if int(m.group(1)) <= groups else m.group(0),
            self.replacement,
        )
        result = self.pattern.sub(replacement, name)
        return (
            result.lower() if self.case == "L" else result.upper() if self.case == "U" else result
        )


_RULE = r"(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_RULE_SPLITTER = re.compile(r"\s*(" + _RULE + r")\s*(?:,\s*|$)")


def parse_mapping_rules(text: str) -> Callable[[str], str]:
    """ssl.principal.mapping.rules (Kafka's SslPrincipalMapper): a function from a
    certificate's name to the principal's name; ConfigError on a rule Kafka refuses."""
    rules: list[_Rule] = []
    for match in _RULE_SPLITTER.finditer(text.strip() or "DEFAULT"):
        rule = match.group(1)
        if not rule:
            continue
        parsed = re.match(_RULE, rule)
        if parsed is None or parsed.end() != len(rule) or parsed.group(5):
            raise ConfigError(f"ssl.principal.mapping.rules: invalid rule {rule!r}")
        if parsed.group(1):
            rules.append(_Rule(None, "", ""))
        else:
            try:
                pattern = re.compile(parsed.group(2))
            except re.error as e:
                raise ConfigError(f"ssl.principal.mapping.rules: {rule!r}: {e}") from None
            rules.append(_Rule(pattern, parsed.group(3), parsed.group(4)))

    def map_name(name: str) -> str:
        for rule in rules:
            result = rule.apply(name)
            if result is not None:
                return result
        raise NoMatchingRule(f"no rule of ssl.principal.mapping.rules applies to {name}")

    return map_name


def peer_principal(ssl_object: ssl.SSLObject | None, map_name: Callable[[str], str]) -> str:
    """The principal of a TLS connection: User:<mapped subject> of a verified client
    certificate, or User:ANONYMOUS without one."""
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    if not cert:
        return "User:ANONYMOUS"
    subject = cert.get("subject", ())
    return "User:" + map_name(subject_name(subject))  # type: ignore[arg-type]

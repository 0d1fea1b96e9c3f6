"""A client certificate's principal: its subject in RFC 2253 form as Java's X500Principal writes
it, then ssl.principal.mapping.rules as Kafka's SslPrincipalMapper applies them."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from certs import make_certs

from kpy.config import ConfigError
from kpy.tls import NoMatchingRule, parse_mapping_rules, subject_name


def test_subject_of_a_real_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    decoded = ssl._ssl._test_decode_cert(str(certs.client.cert))  # type: ignore[attr-defined]
    assert subject_name(decoded["subject"]) == "CN=client,OU=test,O=kpy"


def test_special_characters_and_multi_valued_names() -> None:
    subject = (
        (("countryName", "US"),),
        (("organizationName", "Acme, Inc."),),
        (("commonName", "#app"), ("userId", "42")),
    )
    assert subject_name(subject) == "CN=\\#app+UID=42,O=Acme\\, Inc.,C=US"
    email = ((("emailAddress", "a@b.c"),),)
    assert subject_name(email) == "1.2.840.113549.1.9.1=#16056140622e63"


@pytest.mark.parametrize(
    ("rules", "name", "principal"),
    [
        ("DEFAULT", "CN=app,OU=eng,O=acme", "CN=app,OU=eng,O=acme"),
        (
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,DEFAULT",
            "CN=kafka1,OU=ServiceUsers,O=Org",
            "kafka1",
        ),
        (
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,DEFAULT",
            "CN=app,OU=eng,O=acme",
            "CN=app,OU=eng,O=acme",
        ),
        ("RULE:^CN=(.*?),OU=(.*?),O=.*$/$1@$2/L", "CN=App,OU=Eng,O=acme", "app@eng"),
        ("RULE:^CN=(.*?),OU=(.*?),O=.*$/$1@$2/U", "CN=App,OU=Eng,O=acme", "APP@ENG"),
        ("RULE:^CN=([^,]*).*$/$1 via $3/", "CN=x,O=y", "x via $3"),
    ],
)
def test_mapping_rules(rules: str, name: str, principal: str) -> None:
    assert parse_mapping_rules(rules)(name) == principal


def test_no_rule_applies() -> None:
    with pytest.raises(NoMatchingRule):
        parse_mapping_rules("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/")("CN=app,O=acme")


@pytest.mark.parametrize("rules", ["RULE:a/b", "NOPE", "RULE:^CN=(/$1/"])
def test_bad_rules_are_config_errors(rules: str) -> None:
    with pytest.raises(ConfigError):
        parse_mapping_rules(rules)

"""Unit tests of core/mail.py: addresses as SES takes them."""

from __future__ import annotations

import pytest

from core.mail import ADDRESS_RULE, CONTROL_RULE, ascii_address


def test_ascii_address_sends_a_non_ascii_domain_as_punycode() -> None:
    assert ascii_address("ada@bücher.example") == "ada@xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("a" * 65 + "@example.com", ADDRESS_RULE),
        ("ada@" + "b" * 64 + ".com", ADDRESS_RULE),
        ("first..last@example.com", ADDRESS_RULE),
        ("ada@localhost", ADDRESS_RULE),
        ("ada@example.com\r\nBcc: eve@example.com", CONTROL_RULE),
    ],
)
def test_ascii_address_refuses_what_mail_cannot_route_saying_what_is_allowed(address: str, rule: str) -> None:
    with pytest.raises(ValueError, match="^" + rule.replace("(", r"\(").replace(")", r"\)") + "$"):
        ascii_address(address)

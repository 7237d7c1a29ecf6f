"""Email addresses as SES takes them: 7-bit ASCII before the @, any script in the domain (sent as IDNA), RFC 5321's
lengths. The email channel sends to them; the audience stores a user's address only when it is one, so that an address
accepted for a user is one every email delivery to them can take."""

from __future__ import annotations

import re
import unicodedata

# RFC 5322 ``atext``: what a word of a name, or a dot-separated part of an address, holds without quotes.
ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
# SES supports no SMTPUTF8 (RFC 6531): the part of an address before the @ is 7-bit ASCII, a dot-atom (no quoted
# local parts, no empty parts between dots); the domain is sent encoded (IDNA), so it may be in any script.
_LOCAL_PART = re.compile(f"[{ATEXT}]+(?:\\.[{ATEXT}]+)*")
# A domain's label as mail is routed to it (letters, digits, inner hyphens: RFC 5321 and 1035), once IDNA-encoded.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# RFC 5321's longest path (256 octets with its angle brackets) and local part.
_MAX_ADDRESS = 254
_MAX_LOCAL_PART = 64

# What a person is told; none quotes the value (a 422 names the field).
CONTROL_RULE = "must not contain line breaks, tabs or other control characters"
ADDRESS_RULE = "is not an email address (write it as name@example.com)"
_ASCII_LOCAL_RULE = (
    "must have only ASCII letters, digits and !#$%&'*+-/=?^_`{|}~ before the @ (SES sends no other; "
    "the domain may be in any script)"
)
# What ends or folds a header line (CR, LF, NEL, the Unicode line and paragraph separators) or has no place in an
# address (NUL, DEL, tabs, other C0 and C1 controls): refused in every address field, so none can add a header.
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def has_control_character(value: str) -> bool:
    return any(unicodedata.category(char) in _CONTROL_CATEGORIES for char in value)


def _ascii_domain(domain: str) -> str | None:
    """Return the domain as SES takes it (IDNA's punycode for a non-ASCII one), or ``None`` when it is no host name."""
    # An A-label (xn--) is checked too: punycode that decodes to no name would be sent, and bounce.
    if not domain.isascii() or "xn--" in domain.lower():
        import idna  # what requests encodes hosts with (UTS 46 mapping, IDNA 2008); loaded only for such a domain

        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except UnicodeError:  # idna.IDNAError is one
            return None
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return domain


def ascii_address(address: str, rule: str = ADDRESS_RULE) -> str:
    """Return an address (``local@domain``, no name) as SES takes it, 7-bit ASCII; raise ``ValueError`` saying what
    is allowed (``rule``, when the address is no address at all)."""
    if has_control_character(address):
        raise ValueError(CONTROL_RULE)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(rule)
    if "@" not in local and not local.isascii():
        raise ValueError(_ASCII_LOCAL_RULE)
    ascii_domain = _ascii_domain(domain)
    if not _LOCAL_PART.fullmatch(local) or len(local) > _MAX_LOCAL_PART or ascii_domain is None:
        raise ValueError(rule)
    encoded = f"{local}@{ascii_domain}"
    if len(encoded) > _MAX_ADDRESS:
        raise ValueError(f"must be at most {_MAX_ADDRESS} characters long")
    return encoded

"""Unit tests of api/admin_auth.py: the bearer token parsing, API Gateway's expression for it, the SHA-256 check."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.admin_auth import BEARER_HEADER_PATTERN, bearer_token, check_admin_token
from core.errors import AuthenticationError, ForbiddenError

TOKEN = "admin-token-42"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"  BEARER   {TOKEN}  "])
def test_bearer_token_well_formed_header_returns_the_token(header: str) -> None:
    assert bearer_token(header) == TOKEN


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", f"Basic {TOKEN}", TOKEN])
def test_bearer_token_missing_or_malformed_raises_authentication_error(header: str | None) -> None:
    with pytest.raises(AuthenticationError):
        bearer_token(header)


@pytest.mark.parametrize("expected", [DIGEST, DIGEST.upper(), f" {DIGEST}\n"])
def test_check_admin_token_matching_digest_passes(expected: str) -> None:
    check_admin_token(f"Bearer {TOKEN}", expected)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("Bearer other", DIGEST, id="other-token"),
        pytest.param(f"Bearer {DIGEST}", DIGEST, id="the-digest-itself"),
        pytest.param(f"Bearer {TOKEN}", "", id="no-digest-configured"),
        pytest.param("Bearer \ud800", DIGEST, id="lone-surrogate"),  # no UTF-8: was an encoding error, a 500
    ],
)
def test_check_admin_token_wrong_token_raises_forbidden(header: str, expected: str) -> None:
    with pytest.raises(ForbiddenError):
        check_admin_token(header, expected)


def test_check_admin_token_error_never_contains_the_token() -> None:
    with pytest.raises(ForbiddenError) as raised:
        check_admin_token("Bearer secret-guess-77", DIGEST)

    assert "secret-guess-77" not in str(raised.value)


# Header values as HTTP carries them (visible ASCII, space, tab), often starting like a bearer header.
_HEADER_CHARACTERS = st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t")
_HEADERS = st.one_of(
    st.text(_HEADER_CHARACTERS, max_size=12),
    st.builds(
        lambda lead, scheme, gap, rest: lead + scheme + gap + rest,
        st.sampled_from(["", " ", "\t "]),
        st.sampled_from(["Bearer", "bearer", "BEARER", "BeArEr", "Bearer:", "Bear", "Basic", "Bearerx"]),
        st.sampled_from(["", " ", "  ", "\t", " \t", "\t "]),
        st.text(_HEADER_CHARACTERS, max_size=12),
    ),
)


@given(_HEADERS)
def test_bearer_header_pattern_matches_exactly_the_headers_bearer_token_accepts(header: str) -> None:
    try:
        bearer_token(header)
        accepted = True
    except AuthenticationError:
        accepted = False

    assert (re.fullmatch(BEARER_HEADER_PATTERN, header) is not None) == accepted


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer   {TOKEN} ", f" BEARER \t{TOKEN}"])
def test_bearer_header_pattern_matches_bearer_headers(header: str) -> None:
    assert re.fullmatch(BEARER_HEADER_PATTERN, header)


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer   ", f"Bearer\t{TOKEN}", f"Basic {TOKEN}", TOKEN])
def test_bearer_header_pattern_refuses_other_headers(header: str) -> None:
    assert re.fullmatch(BEARER_HEADER_PATTERN, header) is None

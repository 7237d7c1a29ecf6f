"""Unit tests of api/admin_auth.py: the bearer token parsing and its check against a SHA-256."""

from __future__ import annotations

import hashlib

import pytest

from api.admin_auth import bearer_token, check_admin_token
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
    ],
)
def test_check_admin_token_wrong_token_raises_forbidden(header: str, expected: str) -> None:
    with pytest.raises(ForbiddenError):
        check_admin_token(header, expected)


def test_check_admin_token_error_never_contains_the_token() -> None:
    with pytest.raises(ForbiddenError) as raised:
        check_admin_token("Bearer secret-guess-77", DIGEST)

    assert "secret-guess-77" not in str(raised.value)

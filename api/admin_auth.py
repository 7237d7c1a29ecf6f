"""The admin bearer token check, independent of how the token arrived."""

from __future__ import annotations

import hashlib
import hmac

from core.errors import AuthenticationError, ForbiddenError


def bearer_token(header: str | None) -> str:
    """Return the token of an ``Authorization: Bearer …`` header; raise ``AuthenticationError`` when absent."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization: Bearer <admin token> is required")
    return token.strip()


def check_admin_token(header: str | None, expected_sha256: str) -> None:
    """Raise unless the header carries the admin token whose SHA-256 is ``expected_sha256``."""
    token = bearer_token(header)
    digest = hashlib.sha256(token.encode()).hexdigest()
    if not expected_sha256 or not hmac.compare_digest(digest, expected_sha256.strip().lower()):
        raise ForbiddenError("the admin token is not valid")

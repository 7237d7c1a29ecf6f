"""The admin bearer token check, independent of how the token arrived."""

from __future__ import annotations

import hashlib
import hmac

from core.errors import AuthenticationError, ForbiddenError

# The admin authorizer's identity validation expression (serverless.yml): API Gateway answers 401 itself, without
# invoking the authorizer, for a header it does not match, so it matches exactly the headers ``bearer_token`` accepts.
# Anchored, it means the same to API Gateway's (Java) regular expressions as to Python's ``re.fullmatch`` for any ASCII
# header.
BEARER_HEADER_PATTERN = r"^\s*[Bb][Ee][Aa][Rr][Ee][Rr] \s*\S.*$"


def bearer_token(header: str | None) -> str:
    """Return the token of an ``Authorization: Bearer …`` header; raise ``AuthenticationError`` when absent."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Authorization: Bearer <admin token> is required")
    return token.strip()


def check_admin_token(header: str | None, expected_sha256: str) -> None:
    """Raise unless the header carries the admin token whose SHA-256 is ``expected_sha256``."""
    token = bearer_token(header)
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    if not expected_sha256 or not hmac.compare_digest(digest, expected_sha256.strip().lower()):
        raise ForbiddenError("the admin token is not valid")

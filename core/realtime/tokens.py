"""Browser connection tokens: a user id, the channel/topics it may hear and an expiry, signed with HMAC-SHA256.

A token is ``rt1.<key id>.<claims>.<signature>``: the claims are base64url JSON ``{"sub", "topics", "iat", "exp",
"end"}``, the signature is base64url ``HMAC-SHA256(key, "rt1.<key id>.<claims>")``. It holds nothing secret (a user id
and topic names a page knows anyway), so a page may keep it; what it proves is that the service issued it, for that
user and those topics, until ``exp``. ``end`` is when the session the app's backend opened ends: a refresh over the
connection signs a new token with the same ``end`` and never one past it, so the page comes back to its backend by
then (a token signed before ``end`` existed ends with its ``exp``). The key id names which of the kept keys signed it,
so that a rotation adds a key without refusing the tokens signed with the one before (``core.realtime.keys``); a key
retired by a rotation verifies only tokens issued before it was.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from core.errors import InvalidTokenError
from core.realtime.ports import KeyRingPort

if TYPE_CHECKING:
    from core.realtime.keys import VerificationKey

TOKEN_VERSION = "rt1"  # noqa: S105 (the format's version, not a secret)
KEY_ID_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"
# A token travels in a query string: a bound on what is parsed at all.
MAX_TOKEN_CHARS = 4096
# Clocks of the functions that sign and check tokens differ by a little.
CLOCK_SKEW_SECONDS = 60
_KEY_ID = re.compile(KEY_ID_PATTERN)
# A token's body and signature are unpadded base64url, ASCII only: hmac.compare_digest refuses other text.
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


@dataclass(frozen=True)
class TokenClaims:
    """What a token says: whose it is, the ``<channel>/<topic>`` names it may hear, when it was issued and expires,
    and when the session it belongs to ends (no refreshed token expires after that); the id of the key that signed
    it, and the key and issue time of its session's first token, the one the app's backend had signed (a refreshed
    token carries them, ``okid`` and ``oiat``; a backend's token is its own first).

    A token is taken only while its session's first key still vouches for that first token: after a rotation that
    drops the key, or after one that retired it before the first token was issued, neither the session's refreshed
    tokens nor its connections' refreshes work, whichever key signed the latest.
    """

    user_id: str
    topics: tuple[str, ...]
    issued_at: int
    expires_at: int
    session_ends_at: int
    key_id: str = ""
    session_key_id: str = ""
    session_issued_at: int = 0


@dataclass(frozen=True)
class IssuedToken:
    """A token and its claims."""

    token: str
    claims: TokenClaims


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, signed: str) -> str:
    return _encode(hmac.new(secret, signed.encode(), hashlib.sha256).digest())


def issue_token(
    user_id: str,
    topics: tuple[str, ...],
    ttl_seconds: int,
    keys: KeyRingPort,
    now: float,
    *,
    session_ends_at: int | None = None,
    session: tuple[str, int] | None = None,
) -> IssuedToken:
    """Sign a token for ``user_id`` and ``topics`` that expires ``ttl_seconds`` after ``now`` (Unix time), and never
    after ``session_ends_at`` (by default its own expiry: no refresh outlives it). ``session`` is the key id and issue
    time of the session's first token, for a refresh (by default this token is its session's first)."""
    issued_at = int(now)
    expires_at = issued_at + ttl_seconds
    ends_at = expires_at if session_ends_at is None else session_ends_at
    key_id, secret = keys.signing_key()
    first_key, first_issued = (key_id, issued_at) if session is None else session
    claims = TokenClaims(
        user_id, tuple(topics), issued_at, min(expires_at, ends_at), ends_at, key_id, first_key, first_issued
    )
    payload: dict[str, Any] = {
        "sub": user_id,
        "topics": list(claims.topics),
        "iat": claims.issued_at,
        "exp": claims.expires_at,
        "end": claims.session_ends_at,
    }
    if session is not None:
        payload.update(okid=first_key, oiat=first_issued)
    body = _encode(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    signed = f"{TOKEN_VERSION}.{key_id}.{body}"
    return IssuedToken(f"{signed}.{_signature(secret, signed)}", claims)


def _claims(payload: Any) -> TokenClaims:
    if not isinstance(payload, dict):
        raise InvalidTokenError("the token is malformed")
    user_id, topics = payload.get("sub"), payload.get("topics")
    issued_at, expires_at = payload.get("iat"), payload.get("exp")
    # A token signed before sessions had an end: its session ends with it.
    ends_at = payload.get("end", expires_at)
    if (
        not isinstance(user_id, str)
        or not user_id
        or not isinstance(topics, list)
        or not all(isinstance(topic, str) for topic in topics)
        or not isinstance(issued_at, int)
        or not isinstance(expires_at, int)
        or not isinstance(ends_at, int)
        or expires_at > ends_at
    ):
        raise InvalidTokenError("the token is malformed")
    # A refreshed token names its session's first key and issue time; a backend's token is its own first.
    first_key, first_issued = payload.get("okid"), payload.get("oiat")
    if (first_key is None) != (first_issued is None) or (
        first_key is not None
        and (
            not isinstance(first_key, str)
            or not _KEY_ID.fullmatch(first_key)
            or not isinstance(first_issued, int)
            or first_issued > issued_at
        )
    ):
        raise InvalidTokenError("the token is malformed")
    return TokenClaims(user_id, tuple(topics), issued_at, expires_at, ends_at, "", first_key or "", first_issued or 0)


def signed_after_retirement(key: VerificationKey, issued_at: int) -> bool:
    """Tell whether a token dated ``issued_at`` claims to be signed by ``key`` after it was retired: rotated out
    (after a leak, say), whoever still holds it can sign, but only what is dated as if signed before, and so expired
    within the stage's longest token after the rotation."""
    return key.signs_until is not None and issued_at > key.signs_until + CLOCK_SKEW_SECONDS


def session_vouched_for(keys: KeyRingPort, key_id: str, issued_at: int) -> bool:
    """Tell whether the key ``key_id`` still vouches for a session's first token, issued at ``issued_at``: it is kept,
    and was not retired before then."""
    key = keys.verification_key(key_id)
    return key is not None and not signed_after_retirement(key, issued_at)


def read_token(token: str, keys: KeyRingPort, now: float, *, max_seconds: int) -> TokenClaims:
    """Return the claims of a token this service signed and that has not expired.

    ``max_seconds`` is this stage's longest token (``REALTIME_TOKEN_MAX_SECONDS``): no token, and no session of
    refreshed tokens, lives longer. Together with the retired key's bound on ``iat`` it also ends what a retired key
    verifies: nothing, once it was retired longer than that, whether or not a rotation dropped it yet.

    Raises
    ------
    InvalidTokenError
        The token is malformed, signed by no kept key, forged, signed by a key after its retirement, longer-lived
        than this stage issues, or expired; the message says which, never the token.
    """
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidTokenError("the token is malformed")
    parts = token.split(".")
    if (
        len(parts) != 4
        or parts[0] != TOKEN_VERSION
        or not _KEY_ID.fullmatch(parts[1])
        or not all(_BASE64URL.fullmatch(part) for part in parts[2:])
    ):
        raise InvalidTokenError("the token is malformed")
    _, key_id, body, signature = parts
    key = keys.verification_key(key_id)
    if key is None:
        raise InvalidTokenError("the token was signed with a key this service does not hold")
    if not hmac.compare_digest(_signature(key.secret, f"{TOKEN_VERSION}.{key_id}.{body}"), signature):
        raise InvalidTokenError("the token's signature does not verify")
    try:
        claims = _claims(json.loads(_decode(body)))
    except (ValueError, binascii.Error):
        raise InvalidTokenError("the token is malformed") from None
    if signed_after_retirement(key, claims.issued_at):
        raise InvalidTokenError("the token was signed with a key retired before it was issued")
    if not claims.session_key_id:  # a backend's token: its own session's first, vouched for by the checks above
        claims = replace(claims, session_key_id=key_id, session_issued_at=claims.issued_at)
    elif not session_vouched_for(keys, claims.session_key_id, claims.session_issued_at):
        raise InvalidTokenError("the token's session was revoked: ask for a new token")
    claims = replace(claims, key_id=key_id)
    # ``exp`` is never past ``end``: this bounds the token's own life too.
    if claims.session_ends_at - claims.issued_at > max_seconds:
        raise InvalidTokenError(f"the token lives longer than this service's tokens ({max_seconds} s at most)")
    if claims.expires_at <= now:
        raise InvalidTokenError("the token has expired: ask for a new one")
    if claims.issued_at > now + CLOCK_SKEW_SECONDS:
        raise InvalidTokenError("the token is not valid yet")
    return claims

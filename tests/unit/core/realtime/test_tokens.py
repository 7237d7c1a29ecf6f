"""Unit tests of connection tokens (core/realtime/tokens.py): signed, expiring, bound to one user and its topics."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidTokenError
from core.realtime.keys import rotated
from core.realtime.tokens import issue_token, read_token
from tests.unit.core.realtime.fakes import FakeKeyRing

NOW = 1_800_000_000.0


def test_read_token_issued_token_gives_its_claims() -> None:
    keys = FakeKeyRing()
    issued = issue_token("alice", ("orders/shipped",), 900, keys, NOW)

    claims = read_token(issued.token, keys, NOW + 10)

    assert (claims.user_id, claims.topics, claims.expires_at) == ("alice", ("orders/shipped",), int(NOW) + 900)


def test_read_token_signed_with_another_secret_is_refused() -> None:
    forged = issue_token("alice", (), 900, FakeKeyRing(keys={"k1": b"x" * 32}), NOW).token

    with pytest.raises(InvalidTokenError, match="signature does not verify"):
        read_token(forged, FakeKeyRing(), NOW)


def test_read_token_claims_changed_after_signing_is_refused() -> None:
    keys = FakeKeyRing()
    version, key_id, body, signature = issue_token("alice", (), 900, keys, NOW).token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "bob"
    changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    with pytest.raises(InvalidTokenError, match="signature does not verify"):
        read_token(f"{version}.{key_id}.{changed}.{signature}", keys, NOW)


def test_read_token_past_its_expiry_is_refused() -> None:
    keys = FakeKeyRing()
    token = issue_token("alice", (), 900, keys, NOW).token

    with pytest.raises(InvalidTokenError, match="expired"):
        read_token(token, keys, NOW + 900)


def test_read_token_issued_in_the_future_is_refused() -> None:
    # Dated ahead of this clock by more than the skew allowed (a signer's clock gone wrong): not honoured early.
    keys = FakeKeyRing()
    token = issue_token("alice", (), 900, keys, NOW + 3600).token

    with pytest.raises(InvalidTokenError, match="not valid yet"):
        read_token(token, keys, NOW)


def test_read_token_of_a_key_no_longer_kept_is_refused() -> None:
    token = issue_token("alice", (), 900, FakeKeyRing(current="old", keys={"old": b"o" * 32}), NOW).token

    with pytest.raises(InvalidTokenError, match="key this service does not hold"):
        read_token(token, FakeKeyRing(), NOW)


def test_read_token_signed_before_a_rotation_still_verifies() -> None:
    before = FakeKeyRing()
    token = issue_token("alice", (), 900, before, NOW).token
    after = FakeKeyRing.of(rotated(before.key_set(), NOW + 60, keep_seconds=3900))

    assert after.current != before.current
    assert read_token(token, after, NOW + 60).user_id == "alice"


def test_issue_token_after_a_rotation_signs_with_the_new_key() -> None:
    after = FakeKeyRing.of(rotated(FakeKeyRing().key_set(), NOW, keep_seconds=3900))

    token = issue_token("alice", (), 900, after, NOW).token

    assert token.split(".")[1] == after.current


@given(st.text(max_size=300))
def test_read_token_any_text_is_refused_as_invalid_token_only(text: str) -> None:
    with pytest.raises(InvalidTokenError):
        read_token(text, FakeKeyRing(), NOW)


def test_read_token_carries_no_secret() -> None:
    keys = FakeKeyRing(keys={"k1": b"secret-bytes-of-the-key-0123456789"})

    token = issue_token("alice", ("a/b",), 900, keys, NOW).token

    assert b"secret-bytes" not in base64.urlsafe_b64decode(token.split(".")[2] + "==")
    assert "secret-bytes" not in token

"""Unit tests of connection tokens (core/realtime/tokens.py): signed, expiring, bound to one user and its topics, to a
session's end, to the stage's longest life, and to the time before their key's retirement."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidTokenError
from core.realtime.keys import rotated
from core.realtime.tokens import CLOCK_SKEW_SECONDS, issue_token, read_token
from tests.unit.core.realtime.fakes import FakeKeyRing

NOW = 1_800_000_000.0
MAX_SECONDS = 3600


def test_read_token_issued_token_gives_its_claims() -> None:
    keys = FakeKeyRing()
    issued = issue_token("alice", ("orders/shipped",), 900, keys, NOW)

    claims = read_token(issued.token, keys, NOW + 10, max_seconds=MAX_SECONDS)

    assert (claims.user_id, claims.topics, claims.expires_at) == ("alice", ("orders/shipped",), int(NOW) + 900)


def test_read_token_signed_with_another_secret_is_refused() -> None:
    forged = issue_token("alice", (), 900, FakeKeyRing(keys={"k1": b"x" * 32}), NOW).token

    with pytest.raises(InvalidTokenError, match="signature does not verify"):
        read_token(forged, FakeKeyRing(), NOW, max_seconds=MAX_SECONDS)


def test_read_token_claims_changed_after_signing_is_refused() -> None:
    keys = FakeKeyRing()
    version, key_id, body, signature = issue_token("alice", (), 900, keys, NOW).token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "bob"
    changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    with pytest.raises(InvalidTokenError, match="signature does not verify"):
        read_token(f"{version}.{key_id}.{changed}.{signature}", keys, NOW, max_seconds=MAX_SECONDS)


def test_read_token_past_its_expiry_is_refused() -> None:
    keys = FakeKeyRing()
    token = issue_token("alice", (), 900, keys, NOW).token

    with pytest.raises(InvalidTokenError, match="expired"):
        read_token(token, keys, NOW + 900, max_seconds=MAX_SECONDS)


def test_read_token_issued_in_the_future_is_refused() -> None:
    # Dated ahead of this clock by more than the skew allowed (a signer's clock gone wrong): not honoured early.
    keys = FakeKeyRing()
    token = issue_token("alice", (), 900, keys, NOW + 3600).token

    with pytest.raises(InvalidTokenError, match="not valid yet"):
        read_token(token, keys, NOW, max_seconds=MAX_SECONDS)


def test_read_token_of_a_key_no_longer_kept_is_refused() -> None:
    token = issue_token("alice", (), 900, FakeKeyRing(current="old", keys={"old": b"o" * 32}), NOW).token

    with pytest.raises(InvalidTokenError, match="key this service does not hold"):
        read_token(token, FakeKeyRing(), NOW, max_seconds=MAX_SECONDS)


def test_read_token_signed_before_a_rotation_still_verifies() -> None:
    before = FakeKeyRing()
    token = issue_token("alice", (), 900, before, NOW).token
    after = FakeKeyRing.of(rotated(before.key_set(), NOW + 60, keep_seconds=3900))

    assert after.current != before.current
    assert read_token(token, after, NOW + 60, max_seconds=MAX_SECONDS).user_id == "alice"


def test_issue_token_after_a_rotation_signs_with_the_new_key() -> None:
    after = FakeKeyRing.of(rotated(FakeKeyRing().key_set(), NOW, keep_seconds=3900))

    token = issue_token("alice", (), 900, after, NOW).token

    assert token.split(".")[1] == after.current


@given(st.text(max_size=300))
def test_read_token_any_text_is_refused_as_invalid_token_only(text: str) -> None:
    with pytest.raises(InvalidTokenError):
        read_token(text, FakeKeyRing(), NOW, max_seconds=MAX_SECONDS)


def test_read_token_carries_no_secret() -> None:
    keys = FakeKeyRing(keys={"k1": b"secret-bytes-of-the-key-0123456789"})

    token = issue_token("alice", ("a/b",), 900, keys, NOW).token

    assert b"secret-bytes" not in base64.urlsafe_b64decode(token.split(".")[2] + "==")
    assert "secret-bytes" not in token


def _signed(payload: dict[str, object], keys: FakeKeyRing) -> str:
    """A token of ``payload`` signed as the service signs, whatever its claims say."""
    key_id, secret = keys.signing_key()
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    signed = f"rt1.{key_id}.{body}"
    digest = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{base64.urlsafe_b64encode(digest).decode().rstrip('=')}"


def test_read_token_signed_by_a_key_after_its_retirement_is_refused() -> None:
    # A rotation after a leak revoked nothing: a token signed today with a key retired a month ago verified.
    keys = FakeKeyRing(retired={"k1": int(NOW) - 30 * 86400})
    token = issue_token("victim", ("billing/invoices",), 900, keys, NOW).token

    with pytest.raises(InvalidTokenError, match="retired before it was issued"):
        read_token(token, keys, NOW, max_seconds=MAX_SECONDS)


def test_read_token_signed_by_a_key_within_the_signers_cache_time_after_its_retirement_verifies() -> None:
    # A signer keeps the keys it read for its cache time: it signed with the old key after the rotation, rightly.
    keys = FakeKeyRing(retired={"k1": int(NOW) - 50}, cache_seconds=60)
    token = issue_token("alice", (), 900, keys, NOW).token

    assert read_token(token, keys, NOW, max_seconds=MAX_SECONDS).user_id == "alice"


def test_read_token_living_longer_than_the_stage_maximum_is_refused() -> None:
    keys = FakeKeyRing()
    token = issue_token("alice", (), MAX_SECONDS + 1, keys, NOW).token

    with pytest.raises(InvalidTokenError, match=r"lives longer than this service's tokens \(3600 s at most\)"):
        read_token(token, keys, NOW, max_seconds=MAX_SECONDS)


def test_read_token_whose_session_outlasts_the_stage_maximum_is_refused() -> None:
    keys = FakeKeyRing()
    token = issue_token("alice", (), 900, keys, NOW, session_ends_at=int(NOW) + MAX_SECONDS + 1).token

    with pytest.raises(InvalidTokenError, match="lives longer than this service's tokens"):
        read_token(token, keys, NOW, max_seconds=MAX_SECONDS)


def test_read_token_signed_before_sessions_had_an_end_ends_with_its_expiry() -> None:
    keys = FakeKeyRing()
    token = _signed({"sub": "alice", "topics": [], "iat": int(NOW), "exp": int(NOW) + 900}, keys)

    claims = read_token(token, keys, NOW, max_seconds=MAX_SECONDS)

    assert claims.session_ends_at == claims.expires_at == int(NOW) + 900


def test_read_token_expiring_after_its_session_end_is_refused_as_malformed() -> None:
    keys = FakeKeyRing()
    payload = {"sub": "alice", "topics": [], "iat": int(NOW), "exp": int(NOW) + 900, "end": int(NOW) + 600}

    with pytest.raises(InvalidTokenError, match="malformed"):
        read_token(_signed(payload, keys), keys, NOW, max_seconds=MAX_SECONDS)


def test_issue_token_never_expires_past_its_session_end() -> None:
    issued = issue_token("alice", (), 900, FakeKeyRing(), NOW, session_ends_at=int(NOW) + 300)

    assert (issued.claims.expires_at, issued.claims.session_ends_at) == (int(NOW) + 300, int(NOW) + 300)


def test_read_token_refreshed_in_a_session_whose_first_key_was_dropped_is_refused() -> None:
    # A refresh between the two rotations of "refuse every token at once" signed with the second key: without its
    # session's first key, that token opened connections after both.
    first = FakeKeyRing(current="k0", keys={"k0": b"0" * 32})
    opened = issue_token("victim", ("billing/invoices",), 900, first, NOW)
    refreshed = issue_token(
        "victim", ("billing/invoices",), 900, FakeKeyRing(), NOW + 30, session=("k0", opened.claims.issued_at)
    )

    with pytest.raises(InvalidTokenError, match="session was revoked"):
        read_token(refreshed.token, FakeKeyRing(), NOW + 40, max_seconds=MAX_SECONDS)
    keeps_k0 = FakeKeyRing(keys={"k1": FakeKeyRing().signing_key()[1], "k0": b"0" * 32})
    claims = read_token(refreshed.token, keeps_k0, NOW + 40, max_seconds=MAX_SECONDS)
    assert (claims.key_id, claims.session_key_id, claims.session_issued_at) == ("k1", "k0", int(NOW))


@pytest.mark.parametrize(
    "session",
    [{"okid": "k1"}, {"oiat": 1}, {"okid": 7, "oiat": 1}, {"okid": "k/1", "oiat": 1}, {"okid": "k1", "oiat": "1"}],
)
def test_read_token_with_a_malformed_session_origin_is_refused(session: dict[str, object]) -> None:
    keys = FakeKeyRing()
    payload = {"sub": "alice", "topics": [], "iat": int(NOW), "exp": int(NOW) + 60, "end": int(NOW) + 60, **session}

    with pytest.raises(InvalidTokenError, match="malformed"):
        read_token(_signed(payload, keys), keys, NOW, max_seconds=MAX_SECONDS)


# A retired key's grace is the signers' cache time plus the clock skew, no more: a key rotated out after a leak stops
# verifying tokens dated a few minutes after the rotation, not an hour and a half later.


@pytest.mark.parametrize("minutes_after", [5, 30, 90])
def test_read_token_dated_minutes_after_its_keys_retirement_and_grace_is_refused(minutes_after: int) -> None:
    keys = FakeKeyRing(retired={"k1": int(NOW) - 60 * minutes_after}, cache_seconds=60)
    token = issue_token("mallory", ("billing/invoices",), 900, keys, NOW).token  # signed with the leaked key

    with pytest.raises(InvalidTokenError, match="retired before it was issued"):
        read_token(token, keys, NOW, max_seconds=MAX_SECONDS)


def test_read_token_dated_just_inside_the_skew_after_the_grace_verifies() -> None:
    keys = FakeKeyRing(retired={"k1": int(NOW) - 60 - CLOCK_SKEW_SECONDS}, cache_seconds=60)
    token = issue_token("alice", (), 900, keys, NOW).token

    assert read_token(token, keys, NOW, max_seconds=MAX_SECONDS).user_id == "alice"

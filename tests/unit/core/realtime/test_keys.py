"""Unit tests of the signing keys (core/realtime/keys.py): rotation keeps the keys live tokens need, a retired key
verifies only what was issued before its retirement, reads are cached, an unknown key id is looked up again at most
every few seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from core.errors import SigningKeysError
from core.realtime.keys import (
    REFRESH_FLOOR_SECONDS,
    KeySet,
    SigningKeyStore,
    VerificationKey,
    ensure_keys,
    rotate,
    rotated,
)
from tests.unit.core.realtime.fakes import client_error

NOW = 1_800_000_000.0
PARAMETER = "/notify/test/realtime/signing-keys"


@dataclass
class FakeSsm:
    """SSM parameters in memory, counting reads."""

    values: dict[str, str] = field(default_factory=dict)
    reads: int = 0

    def get_parameter(self, Name: str, WithDecryption: bool) -> dict[str, Any]:
        self.reads += 1
        if Name not in self.values:
            raise client_error("ParameterNotFound", 400)
        return {"Parameter": {"Name": Name, "Value": self.values[Name]}}

    def put_parameter(self, Name: str, Value: str, **_: Any) -> dict[str, Any]:
        self.values[Name] = Value
        return {}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_rotated_retires_the_current_key_and_keeps_it() -> None:
    first = rotated(None, NOW, keep_seconds=3900)

    second = rotated(first, NOW + 100, keep_seconds=3900)

    assert second.current != first.current
    assert second.keys[first.current].retired_at == int(NOW + 100)
    assert second.keys[first.current].secret == first.keys[first.current].secret


def test_rotated_drops_a_key_retired_longer_than_keep_seconds() -> None:
    first = rotated(None, NOW, keep_seconds=3900)
    second = rotated(first, NOW + 100, keep_seconds=3900)

    third = rotated(second, NOW + 100 + 3900, keep_seconds=3900)

    assert set(third.keys) == {second.current, third.current}


def test_key_set_json_round_trips() -> None:
    keys = rotated(rotated(None, NOW, 3900), NOW + 1, 3900)

    assert KeySet.from_json(keys.to_json()) == keys


@pytest.mark.parametrize("text", ["", "{}", '{"current": "a", "keys": {}}', '{"current": "a", "keys": {"a": 1}}'])
def test_key_set_malformed_parameter_is_refused_without_its_value(text: str) -> None:
    with pytest.raises(SigningKeysError, match=r"^the realtime signing keys parameter is malformed$"):
        KeySet.from_json(text)


def test_store_missing_parameter_says_how_to_set_it_up() -> None:
    store = SigningKeyStore(FakeSsm(), PARAMETER)

    with pytest.raises(SigningKeysError, match=r"python -m core\.realtime\.keys rotate"):
        store.signing_key()


def test_store_reads_the_parameter_once_within_its_cache_time() -> None:
    ssm, clock = FakeSsm(), Clock()
    rotate(ssm, PARAMETER, now=NOW)
    store = SigningKeyStore(ssm, PARAMETER, cache_seconds=60, clock=clock)

    store.signing_key()
    clock.now += 59
    store.signing_key()

    assert ssm.reads == 2  # one by rotate, one by the store


def test_store_unknown_key_id_reads_again_and_finds_a_key_added_since() -> None:
    ssm, clock = FakeSsm(), Clock()
    rotate(ssm, PARAMETER, now=NOW)
    store = SigningKeyStore(ssm, PARAMETER, cache_seconds=60, clock=clock)
    store.signing_key()
    clock.now += REFRESH_FLOOR_SECONDS
    new_id = rotate(ssm, PARAMETER, now=clock.now)

    assert store.verification_key(new_id) is not None


def test_store_unknown_key_ids_in_a_burst_read_the_parameter_once() -> None:
    ssm, clock = FakeSsm(), Clock()
    rotate(ssm, PARAMETER, now=NOW)
    store = SigningKeyStore(ssm, PARAMETER, cache_seconds=60, clock=clock)
    store.signing_key()
    reads = ssm.reads

    for index in range(50):
        assert store.verification_key(f"forged{index}") is None

    assert ssm.reads == reads


def test_store_ssm_failure_is_a_signing_keys_error_naming_the_code() -> None:
    class Failing(FakeSsm):
        def get_parameter(self, Name: str, WithDecryption: bool) -> dict[str, Any]:
            raise client_error("ThrottlingException", 400)

    with pytest.raises(SigningKeysError, match=r"\(ThrottlingException\)"):
        SigningKeyStore(Failing(), PARAMETER).signing_key()


def test_ensure_keys_creates_them_once() -> None:
    ssm = FakeSsm()

    assert ensure_keys(ssm, PARAMETER) is True
    value = ssm.values[PARAMETER]
    assert ensure_keys(ssm, PARAMETER) is False
    assert ssm.values[PARAMETER] == value


def test_store_verification_key_of_the_current_key_has_no_last_issue_time() -> None:
    ssm = FakeSsm()
    key_id = rotate(ssm, PARAMETER, now=NOW)

    key = SigningKeyStore(ssm, PARAMETER, cache_seconds=60).verification_key(key_id)

    assert key is not None
    assert key.signs_until is None


def test_store_verification_key_of_a_retired_key_signs_until_its_retirement_and_the_signers_cache_time() -> None:
    # A signer keeps the keys it read cache_seconds: that long after a rotation it may still sign with the old key.
    ssm = FakeSsm()
    old_id = rotate(ssm, PARAMETER, now=NOW)
    rotate(ssm, PARAMETER, now=NOW + 100)
    secret = KeySet.from_json(ssm.values[PARAMETER]).keys[old_id].secret

    key = SigningKeyStore(ssm, PARAMETER, cache_seconds=60).verification_key(old_id)

    assert key == VerificationKey(secret, int(NOW) + 100 + 60)


def test_rotate_by_default_keeps_a_retired_key_while_the_longest_token_a_stage_may_allow_lives() -> None:
    # A stage may let tokens live 24 h; a retired key was kept 3,900 s, so two rotations 66 minutes apart dropped the
    # key of every live long token.
    ssm = FakeSsm()
    first = rotate(ssm, PARAMETER, now=NOW)
    rotate(ssm, PARAMETER, now=NOW + 1000)
    rotate(ssm, PARAMETER, now=NOW + 1000 + 23 * 3600)

    assert first in KeySet.from_json(ssm.values[PARAMETER]).keys

"""Unit tests of the admin authorizer (api/authorizer.py): its cache of the token hash on a fake clock, and what a
refused token logs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from api import authorizer
from api.authorizer import TokenHash
from core.roles.authorizer import AuthorizerSettings
from tests.fakes.delivery import FakeClock
from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.events import authorizer_event


class HashReads:
    """Answers each read with the current hash and counts the reads."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.count = 0
        self.error: Exception | None = None

    def __call__(self) -> str:
        """Return the stored hash, or raise the scripted error."""
        self.count += 1
        if self.error is not None:
            raise self.error
        return self.value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def reads() -> HashReads:
    return HashReads("old-hash")


def test_token_hash_first_get_reads(reads: HashReads, clock: FakeClock) -> None:
    assert TokenHash(reads, 30, clock).get() == "old-hash"
    assert reads.count == 1


def test_token_hash_within_max_age_reuses_the_read(reads: HashReads, clock: FakeClock) -> None:
    cache = TokenHash(reads, 30, clock)
    cache.get()
    reads.value = "new-hash"
    clock.advance(29.9)

    assert cache.get() == "old-hash"
    assert reads.count == 1


def test_token_hash_at_max_age_reads_again(reads: HashReads, clock: FakeClock) -> None:
    cache = TokenHash(reads, 30, clock)
    cache.get()
    reads.value = "new-hash"
    clock.advance(30)

    assert cache.get() == "new-hash"
    assert reads.count == 2


def test_token_hash_age_counts_from_the_last_read(reads: HashReads, clock: FakeClock) -> None:
    cache = TokenHash(reads, 30, clock)
    cache.get()
    clock.advance(30)
    cache.get()
    reads.value = "new-hash"
    clock.advance(29)

    assert cache.get() == "old-hash"
    assert reads.count == 2


def test_token_hash_zero_max_age_reads_every_time(reads: HashReads, clock: FakeClock) -> None:
    cache = TokenHash(reads, 0, clock)

    cache.get()
    cache.get()

    assert reads.count == 2


def test_token_hash_read_failure_after_expiry_raises_instead_of_reusing(reads: HashReads, clock: FakeClock) -> None:
    cache = TokenHash(reads, 30, clock)
    cache.get()
    clock.advance(30)
    reads.error = RuntimeError("SSM is down")

    with pytest.raises(RuntimeError, match="SSM is down"):
        cache.get()


# --- what a refusal logs ----------------------------------------------------------------------------------------------

ADMIN_TOKEN = "admin-token-for-unit-tests"
GUESS = "guessed-token-7c1d"


class HashParameter:
    """An SSM client as the authorizer uses it: one parameter, the admin token's SHA-256, read decrypted."""

    def __init__(self, name: str, token: str) -> None:
        self._name = name
        self._digest = hashlib.sha256(token.encode()).hexdigest()

    def get_parameter(self, Name: str, WithDecryption: bool) -> dict[str, Any]:
        """Return the stored hash."""
        assert (Name, WithDecryption) == (self._name, True)
        return {"Parameter": {"Name": Name, "Value": self._digest}}


@pytest.fixture
def handler_on_fakes(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Any]:
    """The authorizer handler with its settings and SSM parameter in memory; calls it with a header value."""
    config = AuthorizerSettings.from_env(
        {"STAGE": "test", "AWS_REGION": "us-east-1", "ADMIN_TOKEN_HASH_PARAMETER": "/notify/test/admin-token-hash"}
    )
    ssm = HashParameter(config.admin_token_hash_parameter, ADMIN_TOKEN)
    monkeypatch.setattr(authorizer, "settings", lambda: config)
    monkeypatch.setattr(authorizer, "get_client", lambda service, region: ssm)
    return lambda header: authorizer.handler(authorizer_event(header), FakeLambdaContext())


def _records(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_handler_wrong_token_logs_one_warning_without_the_token(
    handler_on_fakes: Callable[[str], Any], logs: Callable[[], str]
) -> None:
    handler_on_fakes(f"Bearer {GUESS}")

    output = logs()
    [record] = _records(output)
    assert (record["level"], record["message"], record["reason"]) == (
        "WARNING",
        "admin token refused",
        "not the admin token",
    )
    assert GUESS not in output
    assert "Traceback" not in output


def test_handler_header_without_bearer_logs_one_warning_without_the_token(
    handler_on_fakes: Callable[[str], Any], logs: Callable[[], str]
) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$") as raised:
        handler_on_fakes(GUESS)

    output = logs()
    [record] = _records(output)
    assert (record["level"], record["reason"]) == ("WARNING", "no Bearer token in Authorization")
    assert GUESS not in output
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_handler_admin_token_logs_nothing(handler_on_fakes: Callable[[str], Any], logs: Callable[[], str]) -> None:
    policy = handler_on_fakes(f"Bearer {ADMIN_TOKEN}")

    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert logs() == ""

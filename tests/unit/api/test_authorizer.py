"""Unit tests of the admin authorizer's own cache of the token hash (api/authorizer.py), on a fake clock."""

from __future__ import annotations

import pytest

from api.authorizer import TokenHash
from tests.fakes.delivery import FakeClock


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

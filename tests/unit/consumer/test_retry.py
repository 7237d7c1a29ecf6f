"""Unit tests of retry delays and visibility changes (consumer/retry.py)."""

from __future__ import annotations

import functools

import pytest

from consumer.retry import (
    BACKOFF_CAP_SECONDS,
    MAX_VISIBILITY_SECONDS,
    VisibilityScheduler,
    backoff_seconds,
    retry_delay,
)
from core.errors import RetryableDeliveryError
from tests.fakes.delivery import FakeSqsVisibility


@pytest.mark.parametrize(("receive_count", "low", "high"), [(1, 5, 10), (2, 10, 20), (3, 20, 40), (5, 80, 160)])
def test_backoff_seconds_doubles_within_jitter_range(receive_count: int, low: int, high: int) -> None:
    delays = {backoff_seconds(receive_count, functools.partial(float, fraction)) for fraction in (0.0, 0.5, 0.999)}

    assert min(delays) == low
    assert max(delays) == high


def test_backoff_seconds_is_capped_at_fifteen_minutes() -> None:
    assert backoff_seconds(30, lambda: 0.999) == BACKOFF_CAP_SECONDS


def test_retry_delay_uses_provider_delay() -> None:
    assert retry_delay(RetryableDeliveryError("429", retry_after=42.2), 3) == 43


def test_retry_delay_caps_provider_delay_below_twelve_hours() -> None:
    assert retry_delay(RetryableDeliveryError("429", retry_after=86400), 1) == MAX_VISIBILITY_SECONDS


def test_retry_delay_zero_provider_delay_waits_a_second() -> None:
    assert retry_delay(RetryableDeliveryError("429", retry_after=0), 1) == 1


def test_visibility_scheduler_changes_message_visibility() -> None:
    sqs = FakeSqsVisibility()

    assert VisibilityScheduler(sqs, "https://queue").postpone("rh", 60) is True
    assert sqs.changes == [("rh", 60)]


def test_visibility_scheduler_refusal_returns_false() -> None:
    assert VisibilityScheduler(FakeSqsVisibility("ReceiptHandleIsInvalid"), "https://queue").postpone("rh", 60) is False


def test_backoff_seconds_follows_configured_base() -> None:
    assert backoff_seconds(3, lambda: 0.0, base=1) == 2


def test_retry_delay_without_provider_delay_uses_configured_base_and_cap() -> None:
    assert retry_delay(RetryableDeliveryError("503"), 10, lambda: 0.999, base=2, cap=30) == 30

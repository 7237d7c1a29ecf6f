"""Unit tests of consumer/retry.py: backoff, retry decisions by attempts and window, and visibility changes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from consumer.retry import (
    BACKOFF_CAP_SECONDS,
    MAX_ATTEMPTS,
    RetryPolicy,
    delay_until,
)
from core.channels.base import retry_after_seconds
from core.errors import RetryableDeliveryError
from core.queue import MAX_VISIBILITY_SECONDS, VisibilityScheduler

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/notify-test-deliveries"
NOW = 1_700_000_000.0
DAY = 86400.0


def _rand(value: float) -> Callable[[], float]:
    return lambda: value


class FakeSqsVisibilityClient:
    """Records ``change_message_visibility`` calls, or raises the error it was given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.changes: list[tuple[str, str, int]] = []

    def change_message_visibility(self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> None:
        """Record the change, or fail."""
        if self.error is not None:
            raise self.error
        self.changes.append((QueueUrl, ReceiptHandle, VisibilityTimeout))


@pytest.mark.parametrize(("attempts", "low", "high"), [(0, 5, 10), (1, 5, 10), (2, 10, 20), (3, 20, 40), (5, 80, 160)])
def test_backoff_after_attempts_doubles_within_equal_jitter_range(attempts: int, low: float, high: float) -> None:
    policy = RetryPolicy()

    assert (policy.backoff(attempts, _rand(0.0)), policy.backoff(attempts, _rand(1.0))) == (low, high)


@pytest.mark.parametrize("attempts", [8, 10, 1000])
def test_backoff_after_many_attempts_is_capped(attempts: int) -> None:
    policy = RetryPolicy()

    assert (policy.backoff(attempts, _rand(0.0)), policy.backoff(attempts, _rand(1.0))) == (
        BACKOFF_CAP_SECONDS / 2,
        BACKOFF_CAP_SECONDS,
    )


def test_backoff_configured_base_and_cap_are_followed() -> None:
    policy = RetryPolicy(base_seconds=2.0, cap_seconds=30.0)

    assert [policy.backoff(attempts, _rand(1.0)) for attempts in (1, 2, 4, 5)] == [2.0, 4.0, 16.0, 30.0]


def test_decide_retryable_error_counts_an_attempt() -> None:
    decision = RetryPolicy().decide(RetryableDeliveryError("HTTP 503"), 2, NOW, NOW, _rand(0.5))

    assert (decision.dead, decision.attempts, decision.reason) == (False, 3, "HTTP 503")


@pytest.mark.parametrize(("fraction", "delay"), [(0.0, 20.0), (0.5, 30.0), (1.0, 40.0)])
def test_decide_retryable_error_waits_backoff_of_the_attempts(fraction: float, delay: float) -> None:
    decision = RetryPolicy().decide(RetryableDeliveryError("timeout"), 2, NOW, NOW, _rand(fraction))

    assert decision.at == NOW + delay


def test_decide_rate_limited_counts_no_attempt() -> None:
    decision = RetryPolicy().decide(RetryableDeliveryError("HTTP 429", 42.0, rate_limited=True), 2, NOW, NOW)

    assert (decision.dead, decision.attempts) == (False, 2)


@pytest.mark.parametrize(
    ("retry_after", "fraction", "delay"),
    [(42.0, 0.0, 42.0), (42.0, 0.5, 46.2), (42.0, 1.0, 50.4), (2.0, 1.0, 3.0), (2.0, 0.0, 2.0)],
)
def test_decide_rate_limited_waits_retry_after_plus_jitter(retry_after: float, fraction: float, delay: float) -> None:
    error = RetryableDeliveryError("HTTP 429", retry_after, rate_limited=True)

    decision = RetryPolicy().decide(error, 0, NOW, NOW, _rand(fraction))

    assert decision.at == pytest.approx(NOW + delay, abs=0.01)


@pytest.mark.parametrize(("fraction", "delay"), [(0.0, 5.0), (1.0, 12.0)])
def test_decide_rate_limited_without_retry_after_waits_a_backoff_step(fraction: float, delay: float) -> None:
    error = RetryableDeliveryError("throttled", rate_limited=True)

    decision = RetryPolicy().decide(error, 0, NOW, NOW, _rand(fraction))

    assert decision.at == NOW + delay


@pytest.mark.parametrize(("fraction", "delay"), [(0.0, 0.0), (1.0, 1.0)])
def test_decide_rate_limited_first_retry_after_zero_waits_at_most_a_second(fraction: float, delay: float) -> None:
    error = RetryableDeliveryError("HTTP 429", 0.0, rate_limited=True)

    decision = RetryPolicy().decide(error, 0, NOW, NOW, _rand(fraction))

    assert decision.at == NOW + delay


@pytest.mark.parametrize(("throttled", "delay"), [(1, 5.0), (2, 10.0), (4, 40.0)])
def test_decide_rate_limited_in_a_row_waits_longer_each_time_and_counts_no_attempt(
    throttled: int, delay: float
) -> None:
    error = RetryableDeliveryError("HTTP 429", 0.0, rate_limited=True)

    decision = RetryPolicy().decide(error, 2, NOW, NOW, _rand(0.0), throttled)

    assert (decision.at, decision.attempts) == (NOW + delay, 2)


@pytest.mark.parametrize(("throttled", "delay"), [(0, 5.0), (3, 40.0)])
def test_decide_rate_limited_without_retry_after_in_a_row_waits_longer_each_time(throttled: int, delay: float) -> None:
    error = RetryableDeliveryError("throttled", rate_limited=True)

    decision = RetryPolicy().decide(error, 0, NOW, NOW, _rand(0.0), throttled)

    assert decision.at == NOW + delay


def test_decide_rate_limited_retry_after_longer_than_the_backoff_step_waits_it() -> None:
    error = RetryableDeliveryError("HTTP 429", 30.0, rate_limited=True)

    decision = RetryPolicy().decide(error, 0, NOW, NOW, _rand(0.0), 1)

    assert decision.at == NOW + 30


@pytest.mark.parametrize(("offset", "fraction", "delay"), [(90, 0.0, 90.0), (90, 1.0, 108.0), (-30, 1.0, 1.0)])
def test_decide_rate_limited_retry_after_http_date_waits_until_it(offset: int, fraction: float, delay: float) -> None:
    # A provider's Retry-After as an HTTP date, read by the channels' parser; one in the past is a Retry-After of 0.
    now = datetime.fromtimestamp(NOW, UTC)
    header = format_datetime(now + timedelta(seconds=offset), usegmt=True)
    error = RetryableDeliveryError("HTTP 429", retry_after_seconds(header, lambda: now), rate_limited=True)

    decision = RetryPolicy().decide(error, 0, NOW, NOW, _rand(fraction))

    assert (decision.at, decision.attempts) == (pytest.approx(NOW + delay, abs=0.01), 0)


def test_decide_retryable_error_retry_after_zero_waits_backoff() -> None:
    decision = RetryPolicy().decide(RetryableDeliveryError("HTTP 503", 0.0), 0, NOW, NOW, _rand(0.0))

    assert decision.at == NOW + 5


def test_decide_retryable_error_retry_after_longer_than_backoff_waits_retry_after() -> None:
    decision = RetryPolicy().decide(RetryableDeliveryError("HTTP 503", 600.0), 0, NOW, NOW, _rand(1.0))

    assert decision.at == NOW + 600


def test_decide_retryable_error_retry_after_shorter_than_backoff_waits_backoff() -> None:
    decision = RetryPolicy().decide(RetryableDeliveryError("HTTP 503", 3.0), 3, NOW, NOW, _rand(0.0))

    assert decision.at == NOW + 40


@pytest.mark.parametrize("rate_limited", [False, True])
def test_decide_retry_after_beyond_twelve_hours_within_window_is_honoured(rate_limited: bool) -> None:
    error = RetryableDeliveryError("HTTP 503", 2 * DAY, rate_limited=rate_limited)

    decision = RetryPolicy(window_seconds=3 * DAY).decide(error, 0, NOW, NOW, _rand(0.0))

    assert decision.at == NOW + 2 * DAY


def test_decide_next_attempt_exactly_at_window_end_is_retried() -> None:
    decision = RetryPolicy().decide(RetryableDeliveryError("timeout"), 0, NOW - DAY + 5, NOW, _rand(0.0))

    assert decision.at == NOW + 5


def test_decide_next_attempt_one_second_after_window_end_is_dead_naming_window() -> None:
    decision = RetryPolicy().decide(RetryableDeliveryError("timeout"), 0, NOW - DAY + 4, NOW, _rand(0.0))

    assert decision.dead
    assert decision.reason == "retry window of 24 h ended: timeout"


def test_decide_rate_limited_retry_after_beyond_window_is_dead() -> None:
    error = RetryableDeliveryError("HTTP 429", 2 * DAY, rate_limited=True)

    decision = RetryPolicy().decide(error, 0, NOW, NOW, _rand(0.0))

    assert (decision.dead, decision.attempts) == (True, 0)


def test_decide_last_attempt_failed_is_dead_naming_attempts() -> None:
    decision = RetryPolicy().decide(RetryableDeliveryError("HTTP 502"), MAX_ATTEMPTS - 1, NOW, NOW)

    assert (decision.dead, decision.attempts, decision.reason) == (True, MAX_ATTEMPTS, "100 attempts made: HTTP 502")


def test_decide_second_to_last_attempt_failed_is_retried() -> None:
    decision = RetryPolicy().decide(RetryableDeliveryError("HTTP 502"), MAX_ATTEMPTS - 2, NOW, NOW)

    assert (decision.dead, decision.attempts) == (False, MAX_ATTEMPTS - 1)


def test_decide_rate_limited_after_last_attempt_is_retried() -> None:
    error = RetryableDeliveryError("HTTP 429", 1.0, rate_limited=True)

    decision = RetryPolicy().decide(error, MAX_ATTEMPTS - 1, NOW, NOW)

    assert (decision.dead, decision.attempts) == (False, MAX_ATTEMPTS - 1)


def test_decide_single_attempt_policy_first_failure_is_dead() -> None:
    decision = RetryPolicy(max_attempts=1).decide(RetryableDeliveryError("timeout"), 0, NOW, NOW)

    assert (decision.dead, decision.attempts, decision.reason) == (True, 1, "1 attempts made: timeout")


def test_delay_until_fraction_of_a_second_is_floored() -> None:
    assert delay_until(NOW + 42.9, NOW, 900) == 42


def test_delay_until_beyond_limit_is_capped_at_limit() -> None:
    assert delay_until(NOW + 3600, NOW, 900) == 900


def test_delay_until_time_passed_is_zero() -> None:
    assert delay_until(NOW - 30, NOW, 900) == 0


def test_visibility_scheduler_postpone_changes_visibility() -> None:
    sqs = FakeSqsVisibilityClient()

    changed = VisibilityScheduler(sqs, QUEUE_URL).postpone("receipt-1", 60)

    assert (changed, sqs.changes) == (True, [(QUEUE_URL, "receipt-1", 60)])


def test_visibility_scheduler_postpone_beyond_twelve_hours_is_capped() -> None:
    sqs = FakeSqsVisibilityClient()

    VisibilityScheduler(sqs, QUEUE_URL).postpone("receipt-1", int(2 * DAY))

    assert sqs.changes == [(QUEUE_URL, "receipt-1", MAX_VISIBILITY_SECONDS)]


def test_visibility_scheduler_postpone_negative_seconds_is_zero() -> None:
    sqs = FakeSqsVisibilityClient()

    VisibilityScheduler(sqs, QUEUE_URL).postpone("receipt-1", -5)

    assert sqs.changes == [(QUEUE_URL, "receipt-1", 0)]


def test_visibility_scheduler_postpone_refused_by_sqs_returns_false() -> None:
    refused = ClientError({"Error": {"Code": "ReceiptHandleIsInvalid", "Message": "no"}}, "ChangeMessageVisibility")

    assert VisibilityScheduler(FakeSqsVisibilityClient(refused), QUEUE_URL).postpone("receipt-1", 60) is False


def test_visibility_scheduler_postpone_sqs_unreachable_returns_false() -> None:
    unreachable = EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com/")

    assert VisibilityScheduler(FakeSqsVisibilityClient(unreachable), QUEUE_URL).postpone("receipt-1", 60) is False

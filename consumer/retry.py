"""When a failed delivery is tried again, or given up: retries by time and by attempts counted by the service.

A retry is a new copy of the message on the delivery queue, delayed until its time (SQS delays at most 15 minutes;
a copy that arrives early is sent on again without an attempt). SQS's receive count plays no part: the copy carries
``attempt``, and the retry window is measured from ``window_start``. Only a consumer that crashes on a message, or
keeps it because SQS refused its copy, leaves it to SQS's ``maxReceiveCount``, which moves it to the dead-letter queue
(a kept message's row is written ``dead`` on its last receive, see ``Deliverer``). A redrive starts a new run: the
policy sees that run's attempts only (the ledger still counts them all, see ``DeliveryMessage.prior_attempts``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import NamedTuple

from core.errors import RetryableDeliveryError

BACKOFF_BASE_SECONDS = 10.0
BACKOFF_CAP_SECONDS = 15 * 60.0
RETRY_WINDOW_SECONDS = 24 * 3600.0
MAX_ATTEMPTS = 100


class Decision(NamedTuple):
    """What follows a failed attempt: the next one at ``at`` (epoch seconds), or ``dead`` with ``reason``."""

    attempts: int
    at: float | None
    reason: str

    @property
    def dead(self) -> bool:
        """Whether the delivery is given up."""
        return self.at is None


class RetryPolicy(NamedTuple):
    """The retry rules of the delivery stage: exponential backoff with jitter, a window and a number of attempts.

    Parameters
    ----------
    base_seconds, cap_seconds:
        The delay after the first failed attempt, doubled after each, and its ceiling.
    window_seconds:
        How long after the retry window opened (the notification's creation, or a redrive) attempts may be made.
    max_attempts:
        How many attempts are made at most.
    """

    base_seconds: float = BACKOFF_BASE_SECONDS
    cap_seconds: float = BACKOFF_CAP_SECONDS
    window_seconds: float = RETRY_WINDOW_SECONDS
    max_attempts: int = MAX_ATTEMPTS

    def backoff(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Return the delay after ``attempts`` failed attempts: base * 2^(n-1), capped, half fixed and half random.

        "Equal jitter": failures of one burst spread out, but none comes back at once.
        """
        exponent = min(max(1, attempts) - 1, 62)
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0**exponent)
        return ceiling / 2 + rand() * ceiling / 2

    def decide(
        self,
        error: RetryableDeliveryError,
        attempts_before: int,
        window_start: float,
        now: float,
        rand: Callable[[], float] = random.random,
        throttled: int = 0,
    ) -> Decision:
        """Decide what follows a retryable failure of the attempt made after ``attempts_before`` others.

        A rate-limited answer (429, throttling) is not an attempt: the first of a row waits the provider's
        ``Retry-After``, or a backoff step when none was given; each one after it in a row (``throttled`` before it)
        waits at least a backoff step that grows with the row, so a ``Retry-After`` of 0 never has the delivery come
        back at once, again and again, for the whole window. A little jitter is added (never less). Any other failure
        counts, backs off, and waits at least a ``Retry-After`` the provider sent. Either way the delivery is dead when
        the next attempt would start after the window ends, or when the attempts are spent.
        """
        if error.rate_limited:
            attempts = attempts_before
            if error.retry_after is None:
                wait = self.backoff(throttled + 1, rand)
            else:
                wait = max(error.retry_after, self.backoff(throttled, rand) if throttled else 0.0)
            delay = wait + rand() * max(1.0, 0.2 * wait)
        else:
            attempts = attempts_before + 1
            if attempts >= self.max_attempts:
                return Decision(attempts, None, f"{attempts} attempts made: {error.reason}")
            delay = max(self.backoff(attempts, rand), error.retry_after or 0.0)
        at = now + delay
        if at > window_start + self.window_seconds:
            hours = self.window_seconds / 3600
            return Decision(attempts, None, f"retry window of {hours:g} h ended: {error.reason}")
        return Decision(attempts, at, error.reason)


def delay_until(at: float, now: float, limit: int) -> int:
    """Return the whole seconds from ``now`` to ``at``, at most ``limit`` (an early arrival is sent on again)."""
    return max(0, min(limit, math.floor(at - now)))

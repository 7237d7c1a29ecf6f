"""When a failed delivery comes back: the provider's delay on a 429, exponential backoff with jitter otherwise.

Waiting is done by the message's visibility timeout, never by sleeping: the Lambda ends, and SQS hands the message out
again when the timeout runs out.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core.errors import RetryableDeliveryError
from core.observability import logger

BACKOFF_BASE_SECONDS = 10
BACKOFF_CAP_SECONDS = 15 * 60
# SQS refuses a visibility timeout that ends more than 12 h after the message was received; the margin covers the
# time between the receive and this change (at most a Lambda's 15 minutes).
MAX_VISIBILITY_SECONDS = 12 * 3600 - 15 * 60


def backoff_seconds(
    receive_count: int,
    rand: Callable[[], float] = random.random,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
) -> int:
    """Return the delay before attempt ``receive_count + 1``: base * 2^(n-1) (10 s by default), capped, jittered.

    Half of the delay is fixed and half random ("equal jitter"), so failures of one burst spread out but none comes
    back at once.
    """
    ceiling = min(cap, base * 2 ** (max(1, receive_count) - 1))
    return max(1, math.ceil(ceiling / 2 + rand() * ceiling / 2))


def retry_delay(
    error: RetryableDeliveryError,
    receive_count: int,
    rand: Callable[[], float] = random.random,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
) -> int:
    """Return how long a failed message stays invisible: the provider's own delay when it gave one, else backoff."""
    if error.retry_after is not None:
        return min(MAX_VISIBILITY_SECONDS, max(1, math.ceil(error.retry_after)))
    return min(MAX_VISIBILITY_SECONDS, backoff_seconds(receive_count, rand, base, cap))


class VisibilityScheduler:
    """Sets the visibility timeout of messages of one queue.

    Parameters
    ----------
    client:
        A boto3 SQS client.
    queue_url:
        The delivery queue's URL.
    """

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def postpone(self, receipt_handle: str, seconds: int) -> bool:
        """Hide a received message for ``seconds``; return ``False`` when SQS refused (it then keeps its own)."""
        try:
            self._client.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )
        except (ClientError, BotoCoreError) as exc:
            code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
            logger.warning("could not change the message visibility", extra={"error": code, "seconds": seconds})
            return False
        return True

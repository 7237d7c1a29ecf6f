"""One delivery attempt: parse, skip what is delivered already, fetch credentials, send, record the outcome.

The outcome decides what SQS does with the record: delivered, failed for good (permanent) or malformed messages are
processed and deleted; retryable failures are reported back after their visibility timeout was set to the retry
delay, and on the last receive the ledger says ``dead`` because SQS moves the message to the dead-letter queue next.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from consumer.channels import Channel, DeliveryReceipt
from consumer.credentials import CredentialSource
from consumer.retry import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, VisibilityScheduler, retry_delay
from core.errors import DeliveryDeferredError, PermanentDeliveryError, RetryableDeliveryError, UpstreamError
from core.ledger import DeliveryLedger
from core.models import DeliveryMessage, DeliveryStatus
from core.observability import logger

MetricRecorder = Callable[[str, str], None]


class Outcome(StrEnum):
    """What became of one attempt; the metric names, by channel type."""

    DELIVERED = "delivered"
    SKIPPED = "skipped"
    RETRIED = "retried"
    FAILED = "failed"
    DEAD = "dead"


@dataclass(frozen=True)
class Attempt:
    """One receive of a delivery message: its SQS ids, how often it has been received, and its body."""

    message_id: str
    receipt_handle: str
    receive_count: int
    body: str


def _ids(body: str) -> dict[str, str]:
    """Return whatever ids a malformed body still names, for its log line."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    integration = data.get("integration")
    ids = {"notification_id": data.get("notification_id")}
    if isinstance(integration, dict):
        ids["integration"] = integration.get("name")
    return {key: value for key, value in ids.items() if isinstance(value, str)}


def parse_message(body: str) -> DeliveryMessage:
    """Return the delivery message of an SQS body; raise ``PermanentDeliveryError`` naming the invalid fields."""
    try:
        return DeliveryMessage.model_validate_json(body)
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in error["loc"]) or "body" for error in exc.errors()})
        raise PermanentDeliveryError(f"malformed delivery message: {', '.join(fields)}") from None


def send_message(
    message: DeliveryMessage, channels: Mapping[str, Channel], credentials: CredentialSource
) -> DeliveryReceipt:
    """Send a message through its channel with the credentials its reference names."""
    channel = channels.get(message.integration.type.value)
    if channel is None:
        raise PermanentDeliveryError(f"no channel delivers type {message.integration.type.value!r}")
    secret = credentials.get(message.integration.credentials_ref) if message.integration.credentials_ref else None
    return channel.send(message.content, message.integration.target, secret, notification_id=message.notification_id)


def _ignore_metric(channel_type: str, outcome: str) -> None:
    """Record no metric."""


class Deliverer:
    """Delivers the messages of a batch, one attempt at a time; safe to call from several threads at once.

    Parameters
    ----------
    channels:
        Channel instances by type (see ``consumer.channels.CHANNELS``).
    ledger:
        The delivery ledger.
    credentials:
        Where integration credentials are read.
    scheduler:
        Sets the visibility timeout of messages to retry.
    max_receive_count:
        The queue's ``maxReceiveCount``: the attempt of this receive count is the last.
    count:
        Records a metric: ``count(channel_type, outcome)``.
    rand:
        Random numbers in [0, 1) for the backoff's jitter.
    backoff_base_seconds, backoff_cap_seconds:
        The first retry delay, doubled on each receive, and its ceiling.
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        ledger: DeliveryLedger,
        credentials: CredentialSource,
        scheduler: VisibilityScheduler,
        max_receive_count: int,
        count: MetricRecorder = _ignore_metric,
        rand: Callable[[], float] = random.random,
        backoff_base_seconds: float = BACKOFF_BASE_SECONDS,
        backoff_cap_seconds: float = BACKOFF_CAP_SECONDS,
    ) -> None:
        self._channels = channels
        self._ledger = ledger
        self._credentials = credentials
        self._scheduler = scheduler
        self._max_receive_count = max_receive_count
        self._count = count
        self._rand = rand
        self._backoff = (backoff_base_seconds, backoff_cap_seconds)

    def process(self, attempt: Attempt) -> Outcome:
        """Deliver one message; raise ``DeliveryDeferredError`` when it must come back (its record then fails)."""
        try:
            message = parse_message(attempt.body)
        except PermanentDeliveryError as exc:
            logger.error(
                "malformed delivery message dropped",
                extra={"message_id": attempt.message_id, "reason": exc.reason, **_ids(attempt.body)},
            )
            self._count("unknown", Outcome.FAILED)
            return Outcome.FAILED
        log = {
            "notification_id": message.notification_id,
            "integration": message.integration.name,
            "channel_type": message.integration.type.value,
            "message_id": attempt.message_id,
            "receive_count": attempt.receive_count,
        }
        try:
            entry = self._ledger.get_entry(message.notification_id, message.integration.name)
            if entry is not None and entry.status is DeliveryStatus.DELIVERED:
                # SQS delivers at least once: a message seen again after its success is not sent twice.
                logger.info("delivery skipped: already delivered", extra=log)
                return Outcome.SKIPPED
            receipt = send_message(message, self._channels, self._credentials)
        except PermanentDeliveryError as exc:
            return self._fail(message, attempt, exc, log)
        except RetryableDeliveryError as exc:
            return self._retry(message, attempt, exc, log)
        except Exception as exc:
            # A bug or a ledger outage: retried like a transient failure, so it ends in the DLQ rather than lost.
            logger.exception("delivery attempt failed unexpectedly", extra=log)
            return self._retry(message, attempt, RetryableDeliveryError(f"internal error ({type(exc).__name__})"), log)
        return self._deliver(message, attempt, receipt, log)

    def _deliver(
        self, message: DeliveryMessage, attempt: Attempt, receipt: DeliveryReceipt, log: dict[str, Any]
    ) -> Outcome:
        # The message is out: a ledger failure now must not make SQS send it a second time.
        self._record(
            message,
            DeliveryStatus.DELIVERED,
            log,
            attempts=attempt.receive_count,
            provider_message_id=receipt.provider_message_id,
        )
        logger.info("delivered", extra={**log, "provider_message_id": receipt.provider_message_id})
        self._count(message.integration.type.value, Outcome.DELIVERED)
        return Outcome.DELIVERED

    def _fail(
        self, message: DeliveryMessage, attempt: Attempt, exc: PermanentDeliveryError, log: dict[str, Any]
    ) -> Outcome:
        self._record(message, DeliveryStatus.FAILED, log, attempts=attempt.receive_count, last_error=exc.reason)
        logger.warning("delivery failed permanently", extra={**log, "reason": exc.reason})
        self._count(message.integration.type.value, Outcome.FAILED)
        return Outcome.FAILED

    def _retry(
        self, message: DeliveryMessage, attempt: Attempt, exc: RetryableDeliveryError, log: dict[str, Any]
    ) -> Outcome:
        channel_type = message.integration.type.value
        if attempt.receive_count >= self._max_receive_count:
            self._record(message, DeliveryStatus.DEAD, log, attempts=attempt.receive_count, last_error=exc.reason)
            logger.error("delivery attempts exhausted: to the dead-letter queue", extra={**log, "reason": exc.reason})
            self._count(channel_type, Outcome.DEAD)
            # Visible at once, so the next receive moves it to the dead-letter queue without waiting.
            self._scheduler.postpone(attempt.receipt_handle, 0)
            raise DeliveryDeferredError(message.notification_id, 0)
        delay = retry_delay(exc, attempt.receive_count, self._rand, *self._backoff)
        self._record(message, DeliveryStatus.RETRYING, log, attempts=attempt.receive_count, last_error=exc.reason)
        self._scheduler.postpone(attempt.receipt_handle, delay)
        logger.warning("delivery will be retried", extra={**log, "reason": exc.reason, "retry_in_seconds": delay})
        self._count(channel_type, Outcome.RETRIED)
        raise DeliveryDeferredError(message.notification_id, delay)

    def _record(self, message: DeliveryMessage, status: DeliveryStatus, log: dict[str, Any], **fields: Any) -> None:
        try:
            self._ledger.update(message.notification_id, message.integration.name, status, **fields)
        except UpstreamError:
            logger.error("ledger update failed", extra={**log, "status": status.value})

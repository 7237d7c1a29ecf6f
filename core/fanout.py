"""The one fan-out: a topic and its metadata become ledger rows and delivery messages on the delivery queue.

Every path that makes a notification (the publish route, schedules, purchase events) goes through ``fan_out``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from core.channels import render_content
from core.errors import (
    ConflictError,
    ContentTooLongError,
    EnqueueError,
    InvalidRequestError,
    MissingTemplateVariablesError,
    NotFoundError,
    PayloadTooLargeError,
    UnsendableContentError,
    UpstreamError,
)
from core.ids import idempotent_notification_id, new_notification_id
from core.ledger import Delivery, DeliveryRow, NotificationRecord
from core.models import DeliveryMessage, MessageIntegration, Topic
from core.observability import logger
from core.ports import NotificationLedgerPort
from core.queue import COPY_RESERVE_BYTES, DELIVERY_MESSAGE_BYTES_LIMIT, MESSAGE_BYTES_LIMIT, DeliveryQueue
from core.templates import missing_variables
from core.times import epoch_time, utc_now

KEY_REUSED = "Idempotency-Key was already used with a different request body"
NOT_IN_TOPIC = "the integration was removed from the topic"


class PublishResult(NamedTuple):
    """A published notification: its id and the SQS message id of each integration's delivery.

    ``resumed`` says this call finished a notification that an earlier attempt had recorded but not fully enqueued.
    """

    notification_id: str
    message_ids: dict[str, str]
    resumed: bool = False


class IdempotentPublish(NamedTuple):
    """What lets a retried publish finish the notification of its first attempt instead of starting another.

    ``notification_id`` is derived from the idempotency scope (``idempotent_notification_id``), ``request_digest``
    identifies the request, and ``window_seconds`` is how long after its creation a notification may be finished so;
    past it (the idempotency key has expired), the same key starts a new notification, under the id derived from the
    expired one's: a key used again each day walks its chain of notifications the ledger still keeps.
    """

    notification_id: str
    request_digest: str
    window_seconds: float


def request_digest(payload: str) -> str:
    """Return the digest of a request's canonical form, kept on the record of an idempotent publish."""
    return hashlib.sha256(payload.encode()).hexdigest()


def build_messages(
    topic: Topic, metadata: Mapping[str, Any], notification_id: str, created_at: str, window_start: str | None = None
) -> list[str]:
    """Render every integration of a topic into a delivery message body; raise naming all missing variables.

    ``window_start``: when the deliveries' retry window opens, when not at ``created_at`` (a retry of the publish
    finishing it later: the topic, its credentials with it, is read then)."""
    missing = missing_variables(topic.integrations, metadata)
    if missing:
        raise MissingTemplateVariablesError(missing)
    bodies = []
    for integration in topic.integrations:
        too_large = PayloadTooLargeError(
            f"the rendered message of integration {integration.name!r} exceeds "
            f"{DELIVERY_MESSAGE_BYTES_LIMIT // 1024} KiB (SQS's {MESSAGE_BYTES_LIMIT // 1024} KiB less "
            f"{COPY_RESERVE_BYTES // 1024} KiB kept for its retries)"
        )
        try:
            content = render_content(integration, metadata)
        except ContentTooLongError as exc:
            raise PayloadTooLargeError(f"integration {integration.name!r}: {exc}") from None
        except UnsendableContentError as exc:
            raise InvalidRequestError("metadata", f"integration {integration.name!r}: {exc}") from None
        except PayloadTooLargeError:
            raise too_large from None
        message = DeliveryMessage(
            notification_id=notification_id,
            delivery_key=integration.name,
            channel=topic.channel,
            topic=topic.topic,
            created_at=created_at,
            integration=MessageIntegration(
                name=integration.name,
                type=integration.type,
                target=integration.target,
                credentials_ref=integration.credentials_ref,
                rate_per_second=integration.rate_per_second,
            ),
            content=content,
            window_start=window_start,
        )
        body = message.model_dump_json(exclude_none=True)
        if len(body.encode()) > DELIVERY_MESSAGE_BYTES_LIMIT:
            raise too_large
        bodies.append(body)
    return bodies


def fan_out(
    topic: Topic,
    metadata: Mapping[str, Any],
    ledger: NotificationLedgerPort,
    queue: DeliveryQueue,
    *,
    caller: str | None = None,
    source: str = "publish",
    notification_id: str | None = None,
    idempotent: IdempotentPublish | None = None,
    time_left: Callable[[], float] | None = None,
) -> PublishResult:
    """Render, write the notification's record, and enqueue one delivery per integration.

    A publish costs one ledger write and ceil(k/10) ``SendMessageBatch`` calls, sent concurrently; the consumer writes
    each delivery's row as its outcome happens. Raises ``EnqueueError`` when SQS refused some messages even after a
    retry; their rows then say ``failed``, the record keeps the message ids of those sent, and nothing unsent is ever
    reported as sent.

    With ``idempotent``, the record is written only if its id is new; when it exists (an earlier attempt answered 502
    or died before it enqueued), this call finishes that notification: it enqueues only the deliveries the record
    does not list as enqueued and returns every message id. The same id with another request is a ``ConflictError``.

    ``time_left`` (seconds left to the caller, less what it needs after the sends) bounds the wait for SQS: batches
    still unanswered then are reported like refused ones (``EnqueueError``, rows ``failed``), never as sent.
    """
    created_at = utc_now()
    if idempotent is not None:
        notification_id = idempotent.notification_id
    notification_id = notification_id or new_notification_id()
    bodies = build_messages(topic, metadata, notification_id, created_at)
    deliveries = tuple(
        Delivery(key=item.name, integration=item.name, type=item.type.value) for item in topic.integrations
    )
    record = NotificationRecord(
        notification_id=notification_id,
        source=source,
        channel=topic.channel,
        topic=topic.topic,
        created_at=created_at,
        caller=caller,
        delivery_count=len(deliveries),
        deliveries=deliveries,
        request_digest=idempotent.request_digest if idempotent else None,
    )
    if idempotent is None:
        ledger.record_notification(record)
    elif ledger.orphaned(notification_id) or not ledger.create_notification(record):
        earlier = _earlier(ledger, notification_id)
        started = epoch_time(earlier.created_at) if earlier is not None else None
        if earlier is None or (started is not None and time.time() - started > idempotent.window_seconds):
            # The key has expired, the record has not (the ledger keeps 30 days), or the record has and rows of its
            # notification are left: this is a new notification, under the next id of the key's chain, not a random
            # one, so that its own retry after a 502 finishes it as well.
            following = idempotent._replace(notification_id=idempotent_notification_id(["after", notification_id]))
            return fan_out(
                topic,
                metadata,
                ledger,
                queue,
                caller=caller,
                source=source,
                idempotent=following,
                time_left=time_left,
            )
        if earlier.request_digest != idempotent.request_digest:
            raise ConflictError(KEY_REUSED)
        return _finish(topic, metadata, ledger, queue, earlier, time_left)
    return _enqueue(ledger, queue, record, list(zip(deliveries, bodies, strict=True)), time_left=time_left)


def _earlier(ledger: NotificationLedgerPort, notification_id: str) -> NotificationRecord | None:
    """Return the record of an earlier notification of this id; ``None`` when only its rows are left."""
    try:
        return ledger.get_record(notification_id)
    except NotFoundError:
        return None


def _finish(
    topic: Topic,
    metadata: Mapping[str, Any],
    ledger: NotificationLedgerPort,
    queue: DeliveryQueue,
    record: NotificationRecord,
    time_left: Callable[[], float] | None,
) -> PublishResult:
    """Enqueue the deliveries of a recorded notification that were not enqueued, as they were first rendered."""
    # Without ids on the record, the earlier attempt died before it could tell what it enqueued: everything is sent
    # again under the same notification id and delivery keys, so the consumer skips a delivery already delivered and
    # a receiver drops a duplicate by X-Notification-Id and X-Delivery-Key.
    earlier = record.enqueued or {}
    pending = [delivery for delivery in record.deliveries if delivery.key not in earlier]
    integrations = {integration.name: integration for integration in topic.integrations}
    present = [delivery for delivery in pending if delivery.integration in integrations]
    subset = topic.model_copy(update={"integrations": [integrations[d.integration] for d in present]})
    # Their retry window opens now, as they are first enqueued, with the topic (and the credentials) read now.
    bodies = build_messages(subset, metadata, record.notification_id, record.created_at, utc_now())
    # The rows of an earlier attempt's refused deliveries say ``failed``; these deliveries are about to be queued.
    ledger.clear_unsent(record.notification_id, [delivery.key for delivery in pending])
    gone = {delivery.key: NOT_IN_TOPIC for delivery in pending if delivery.integration not in integrations}
    logger.info(
        "finishing an earlier attempt of the notification",
        extra={"notification_id": record.notification_id, "enqueued_before": len(earlier), "pending": len(pending)},
    )
    pending_bodies = list(zip(present, bodies, strict=True))
    return _enqueue(ledger, queue, record, pending_bodies, gone, resumed=True, time_left=time_left)


def _enqueue(
    ledger: NotificationLedgerPort,
    queue: DeliveryQueue,
    record: NotificationRecord,
    pending: list[tuple[Delivery, str]],
    unsendable: dict[str, str] | None = None,
    *,
    resumed: bool = False,
    time_left: Callable[[], float] | None = None,
) -> PublishResult:
    """Send ``pending`` and account for it with what the record says earlier attempts enqueued."""
    outcome = queue.send([(delivery.key, body) for delivery, body in pending], time_left)
    sent = {**(record.enqueued or {}), **outcome.sent}
    refused = {**(unsendable or {}), **outcome.failed}
    if outcome.failed or resumed:
        # A publish that took more than one attempt keeps what it enqueued on the record, so that a retry enqueues
        # only the rest. A first attempt that enqueued everything writes nothing more: one ledger write per publish.
        # When the idempotency store fails to save its answer, the answer stands and ``record_enqueued`` writes the
        # ids then (producer/idempotency.py); only a retry after a crash past this point sends everything again, under
        # the same ids, which the consumer and receivers drop as duplicates.
        try:
            ledger.set_enqueued(record.notification_id, sent, list(refused))
        except UpstreamError:
            logger.error(
                "ledger write of enqueued deliveries failed", extra={"notification_id": record.notification_id}
            )
    if refused:
        by_key = {delivery.key: delivery for delivery in record.deliveries}
        rows = [
            (key, DeliveryRow(integration=by_key[key].integration, type=by_key[key].type), f"not enqueued: {reason}")
            for key, reason in refused.items()
        ]
        try:
            ledger.record_failed(record.notification_id, rows)
        except UpstreamError:
            logger.error("ledger write of unsent deliveries failed", extra={"notification_id": record.notification_id})
    if outcome.failed:
        raise EnqueueError(record.notification_id, outcome.failed)
    ordered = {delivery.key: sent[delivery.key] for delivery in record.deliveries if delivery.key in sent}
    return PublishResult(record.notification_id, ordered, resumed=resumed)


def record_enqueued(ledger: NotificationLedgerPort, result: PublishResult) -> None:
    """Write on a published notification's record the message id of every delivery it enqueued; log, never raise.

    For a publish whose answer the idempotency store could not save (``producer/idempotency.py``): a retry with the
    same key runs the publish again, finds this record, and with every delivery listed as enqueued it sends nothing
    and answers the same message ids (``_finish``). Without it, that retry would enqueue every delivery a second time.
    """
    try:
        ledger.set_enqueued(result.notification_id, result.message_ids)
    except UpstreamError:
        # The sends happened and the answer stands; a retry after this sends again, under the same ids, which the
        # consumer and receivers drop as duplicates.
        logger.error("ledger write of enqueued deliveries failed", extra={"notification_id": result.notification_id})

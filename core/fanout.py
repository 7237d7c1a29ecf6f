"""The one fan-out: a topic and its metadata become ledger rows and delivery messages on the delivery queue.

Every path that makes a notification (the publish route, schedules, purchase events) goes through ``fan_out``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.channels import render_content
from core.errors import EnqueueError, MissingTemplateVariablesError, PayloadTooLargeError, UpstreamError
from core.ledger import Delivery, DeliveryLedger, DeliveryRow, NotificationRecord, utc_now
from core.models import DeliveryMessage, MessageIntegration, Topic
from core.observability import logger
from core.queue import BATCH_BYTES_LIMIT, DeliveryQueue
from core.templates import missing_variables


@dataclass(frozen=True)
class PublishResult:
    """A published notification: its id and the SQS message id of each integration's delivery."""

    notification_id: str
    message_ids: dict[str, str]


def new_notification_id() -> str:
    """Return a fresh notification id."""
    return str(uuid.uuid4())


def build_messages(topic: Topic, metadata: Mapping[str, Any], notification_id: str, created_at: str) -> list[str]:
    """Render every integration of a topic into a delivery message body; raise naming all missing variables."""
    missing = missing_variables(topic.integrations, metadata)
    if missing:
        raise MissingTemplateVariablesError(missing)
    bodies = []
    for integration in topic.integrations:
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
            content=render_content(integration, metadata),
        )
        body = message.model_dump_json(exclude_none=True)
        if len(body.encode()) > BATCH_BYTES_LIMIT:
            raise PayloadTooLargeError(
                f"the rendered message of integration {integration.name!r} exceeds {BATCH_BYTES_LIMIT // 1024} KiB"
            )
        bodies.append(body)
    return bodies


def fan_out(
    topic: Topic,
    metadata: Mapping[str, Any],
    ledger: DeliveryLedger,
    queue: DeliveryQueue,
    *,
    caller: str | None = None,
    source: str = "publish",
    notification_id: str | None = None,
) -> PublishResult:
    """Render, write the notification's record, and enqueue one delivery per integration.

    A publish costs one ledger write and ceil(k/10) ``SendMessageBatch`` calls, sent concurrently; the consumer writes
    each delivery's row as its outcome happens. Raises ``EnqueueError`` when SQS refused some messages even after a
    retry; their rows then say ``failed``, and nothing unsent is ever reported as sent.
    """
    notification_id = notification_id or new_notification_id()
    created_at = utc_now()
    bodies = build_messages(topic, metadata, notification_id, created_at)
    deliveries = tuple(
        Delivery(key=item.name, integration=item.name, type=item.type.value) for item in topic.integrations
    )
    ledger.record_notification(
        NotificationRecord(
            notification_id=notification_id,
            source=source,
            channel=topic.channel,
            topic=topic.topic,
            created_at=created_at,
            caller=caller,
            delivery_count=len(deliveries),
            deliveries=deliveries,
        )
    )
    outcome = queue.send([(delivery.key, body) for delivery, body in zip(deliveries, bodies, strict=True)])
    if outcome.failed:
        by_key = {delivery.key: delivery for delivery in deliveries}
        rows = [
            (key, DeliveryRow(integration=by_key[key].integration, type=by_key[key].type), f"not enqueued: {reason}")
            for key, reason in outcome.failed.items()
        ]
        try:
            ledger.record_failed(notification_id, rows)
        except UpstreamError:
            logger.error("ledger write of unsent deliveries failed", extra={"notification_id": notification_id})
        raise EnqueueError(notification_id, outcome.failed)
    return PublishResult(notification_id, outcome.sent)

"""The one fan-out: a topic and its metadata become ledger rows and delivery messages on the delivery queue.

Every path that makes a notification (the publish route, schedules, purchase events) goes through ``fan_out``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import EnqueueError, MissingTemplateVariablesError, PayloadTooLargeError
from core.ledger import DeliveryLedger, utc_now
from core.models import DeliveryMessage, DeliveryStatus, MessageIntegration, Topic
from core.queue import BATCH_BYTES_LIMIT, DeliveryQueue
from core.templates import missing_variables, render_content


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
            channel=topic.channel,
            topic=topic.topic,
            created_at=created_at,
            integration=MessageIntegration(
                name=integration.name,
                type=integration.type,
                target=integration.target,
                credentials_ref=integration.credentials_ref,
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
    notification_id: str | None = None,
) -> PublishResult:
    """Render, record ``queued`` rows, and enqueue one delivery per integration.

    Raises ``EnqueueError`` when SQS refused some messages even after a retry; their rows then say ``failed``, and
    nothing unsent is ever reported as sent.
    """
    notification_id = notification_id or new_notification_id()
    created_at = utc_now()
    bodies = build_messages(topic, metadata, notification_id, created_at)
    names = [integration.name for integration in topic.integrations]
    ledger.record_queued(
        notification_id,
        topic.channel,
        topic.topic,
        created_at,
        [(integration.name, integration.type.value) for integration in topic.integrations],
    )
    outcome = queue.send(list(zip(names, bodies, strict=True)))
    if outcome.failed:
        for name, reason in outcome.failed.items():
            ledger.update(notification_id, name, DeliveryStatus.FAILED, last_error=f"not enqueued: {reason}")
        raise EnqueueError(notification_id, outcome.failed)
    return PublishResult(notification_id, outcome.sent)

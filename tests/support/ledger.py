"""Ledger records as the producer writes them, for suites that need a notification to exist."""

from __future__ import annotations

from core.ledger import Delivery, NotificationRecord


def webhook_record(notification_id: str, delivery_key: str = "hook") -> NotificationRecord:
    """Return the record of a publish to orders/shipped of one webhook delivery ``delivery_key``, by no API key."""
    return NotificationRecord(
        notification_id=notification_id,
        source="publish",
        channel="orders",
        topic="shipped",
        created_at="2026-11-21T20:00:00.000Z",
        caller=None,
        delivery_count=1,
        deliveries=(Delivery(key=delivery_key, integration=delivery_key, type="webhook"),),
    )

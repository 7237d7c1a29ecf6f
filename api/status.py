"""What happened to a notification, from the delivery ledger."""

from __future__ import annotations

from typing import Any

from core.ledger import DeliveryLedger


def notification_status(notification_id: str, ledger: DeliveryLedger) -> dict[str, Any]:
    """Return a notification and the status of each of its deliveries; raise ``NotFoundError`` when unknown."""
    entries = sorted(ledger.entries(notification_id), key=lambda entry: entry.integration)
    first = entries[0]
    return {
        "notification_id": notification_id,
        "channel": first.channel,
        "topic": first.topic,
        "created_at": first.created_at,
        "deliveries": [
            {
                "integration": entry.integration,
                "type": entry.type,
                "status": entry.status.value,
                "attempts": entry.attempts,
                "last_error": entry.last_error,
                "updated_at": entry.updated_at,
            }
            for entry in entries
        ],
    }

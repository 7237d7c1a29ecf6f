"""Notification ids: a fresh one per publish, or the one an idempotency scope always gives.

Kept apart from ``core.fanout`` so that routes which only name a notification (the audience's sends) do not load the
channels to do it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence


def new_notification_id() -> str:
    """Return a fresh notification id."""
    return str(uuid.uuid4())


def idempotent_notification_id(scope: Sequence[str]) -> str:
    """Return the notification id of an idempotency scope (caller, channel, topic, key): always the same for it.

    A SHA-256 of the scope shaped as a version 8 UUID, so it never equals a random (version 4) one.
    """
    digest = bytearray(hashlib.sha256(json.dumps(["notification", *scope]).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))

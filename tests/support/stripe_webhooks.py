"""Stripe webhooks as Stripe sends them: events from ``tests/events/stripe_*.json`` and the ``Stripe-Signature``
header, computed here from Stripe's documentation (``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``), not
with the SDK, so that a misuse of the SDK's verification makes the two disagree."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from tests.support.events import load_event

WEBHOOK_SECRET = "whsec_test_0123456789abcdefghijklmnopqrstuv"


def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Return the ``Stripe-Signature`` header Stripe sends with ``payload``."""
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{moment}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def stripe_event(name: str, **changes: Any) -> dict[str, Any]:
    """Return a fresh copy of ``tests/events/stripe_<name>.json`` with top-level ``changes``."""
    event = load_event(f"stripe_{name}.json")
    event.update(changes)
    return event


def event_body(event: dict[str, Any]) -> str:
    """Return an event's JSON as Stripe writes it (pretty-printed: the signature covers the text as sent)."""
    return json.dumps(event, indent=2)

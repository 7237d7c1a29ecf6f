"""Helpers of the Purchase topic's subscriber suites: SNS events of purchases, customers in the local Stripe server."""

from __future__ import annotations

import json
from typing import Any

from tests.support.events import load_event


def purchase_message(**changes: Any) -> dict[str, Any]:
    """Return the purchase of ``tests/events/sns_purchase.json``, with ``changes``."""
    event = load_event("sns_purchase.json")
    message: dict[str, Any] = json.loads(event["Records"][0]["Sns"]["Message"])
    message.update(changes)
    return message


def sns_event(*messages: dict[str, Any] | str) -> dict[str, Any]:
    """Return an SNS event as Lambda receives it, one record per message (a purchase object, or text as given)."""
    event = load_event("sns_purchase.json")
    (record,) = event["Records"]
    event["Records"] = [
        {**record, "Sns": {**record["Sns"], "Message": text if isinstance(text, str) else json.dumps(text)}}
        for text in messages
    ]
    return event

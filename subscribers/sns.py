"""SNS events as Lambda receives them from the ``Purchase`` topic: each record's message parsed as a purchase."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from core.errors import invalid_fields
from core.observability import logger, metrics
from core.purchases.models import PurchaseEvent


def purchase_events(event: Mapping[str, Any]) -> Iterator[PurchaseEvent]:
    """Yield the purchase of each SNS record; a message that is not a purchase is logged and dropped, a promo code
    that is no code is logged and left out (the purchase is kept: ``PurchaseEvent.promo_code_invalid``).

    Such a message can never become one, so raising would only have Lambda retry it and park it in the failure
    queue. The log names the invalid fields and the SNS message id, never the values (an email, a customer id).
    """
    for record in event.get("Records") or []:
        sns = record.get("Sns") or {}
        try:
            purchase = PurchaseEvent.model_validate_json(sns.get("Message") or "")
        except ValidationError as exc:
            logger.warning(
                "message is not a purchase event: dropped",
                extra={"sns_message_id": sns.get("MessageId"), "invalid_fields": invalid_fields(exc, "message")},
            )
            metrics.add_metric(name="PurchaseEventsDropped", unit="Count", value=1)
            continue
        if purchase.promo_code_invalid:
            logger.warning(
                "promo code of a purchase is not a valid code: left out",
                extra={"sns_message_id": sns.get("MessageId"), "purchase_id": purchase.purchase_id},
            )
        yield purchase

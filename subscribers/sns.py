"""SNS events as Lambda receives them from the ``Purchase`` topic: each record's message parsed as a purchase."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from core.errors import invalid_fields
from core.observability import logger, metrics
from core.purchases.models import PurchaseEvent


class InvalidPurchaseEventError(ValueError):
    """Messages of the event are no purchase events; the text names their SNS message ids and invalid fields only."""


def purchase_events(event: Mapping[str, Any]) -> Iterator[PurchaseEvent]:
    """Yield the purchase of each SNS record; then raise ``InvalidPurchaseEventError`` if a message was no purchase.

    An optional field the subscribers can do without is left out when unusable, and the purchase kept: a promo code
    that is no code (``PurchaseEvent.promo_code_invalid``: the credit records ``invalid_code``), an ``email`` or
    ``user_id`` beyond its length (``PurchaseEvent.fields_left_out``). A message that is still no purchase (no
    customer, an amount that is no whole number of minor units, not JSON) fails the invocation once the others are
    done: Lambda retries it, then keeps the event, payload and all, in the purchase failures queue, where an alarm
    watches and whence it can be invoked again once corrected. Dropped, it would be lost with nothing to redrive.
    The logs and the error name the invalid fields and the SNS message id, never the values (an email, a customer id).
    """
    refused: list[str] = []
    for record in event.get("Records") or []:
        sns = record.get("Sns") or {}
        try:
            # Parsed by json first: pydantic's parser refuses a whole message for one lone surrogate ("\ud800") in an
            # optional field, which the model leaves out.
            purchase = PurchaseEvent.model_validate(_json(sns.get("Message") or ""))
        except ValidationError as exc:
            fields = invalid_fields(exc, "message")
            logger.warning(
                "message is not a purchase event: the invocation fails after the others",
                extra={"sns_message_id": sns.get("MessageId"), "invalid_fields": fields},
            )
            metrics.add_metric(name="PurchaseEventsInvalid", unit="Count", value=1)
            refused.append(f"SNS message {sns.get('MessageId')} (invalid: {fields})")
            continue
        if purchase.promo_code_invalid:
            logger.warning(
                "promo code of a purchase is not a valid code: left out",
                extra={"sns_message_id": sns.get("MessageId"), "purchase_id": purchase.purchase_id},
            )
        if purchase.fields_left_out:
            logger.warning(
                "optional fields of a purchase are not usable: left out",
                extra={
                    "sns_message_id": sns.get("MessageId"),
                    "purchase_id": purchase.purchase_id,
                    "fields_left_out": ", ".join(purchase.fields_left_out),
                },
            )
        yield purchase
    if refused:
        raise InvalidPurchaseEventError("not a purchase event: " + "; ".join(refused))


def _json(message: str) -> Any:
    """The message's JSON value, or the text itself when it is no JSON (the model then refuses it as the message)."""
    try:
        return json.loads(message)
    except (ValueError, RecursionError):
        return message

"""Publishing Purchase events to the SNS ``Purchase`` topic, with the message attributes subscribers filter on.

The message is the ``PurchaseEvent``'s JSON (fields that are unset left out). Its attributes, all ``String``:

- ``has_promo_code``: ``"true"`` or ``"false"``, for subscribers that filter on attributes (the Stripe credit
  subscriber filters on the message body's ``promo_code``, which every publisher sends);
- ``promo_code``: the code in upper case, only when there is one (SNS refuses an empty value);
- ``currency``: the ISO 4217 code in lower case.
"""

from __future__ import annotations

from typing import Any

from core.errors import AWS_ERRORS, aws_error
from core.purchases.models import PurchaseEvent

HAS_PROMO_CODE_ATTRIBUTE = "has_promo_code"
PROMO_CODE_ATTRIBUTE = "promo_code"
CURRENCY_ATTRIBUTE = "currency"


def purchase_attributes(event: PurchaseEvent) -> dict[str, dict[str, str]]:
    """Return the SNS message attributes of a Purchase event."""
    attributes = {
        HAS_PROMO_CODE_ATTRIBUTE: {"DataType": "String", "StringValue": "true" if event.promo_code else "false"},
        CURRENCY_ATTRIBUTE: {"DataType": "String", "StringValue": event.currency},
    }
    if event.promo_code:
        attributes[PROMO_CODE_ATTRIBUTE] = {"DataType": "String", "StringValue": event.promo_code}
    return attributes


def purchase_message(event: PurchaseEvent) -> str:
    """Return the SNS message of a Purchase event: its JSON, unset optional fields left out."""
    return event.model_dump_json(exclude_none=True)


class PurchasePublisher:
    """Publishes Purchase events to one SNS topic; implements ``core.purchases.ports.PurchasePublisherPort``.

    Parameters
    ----------
    client:
        A boto3 SNS client.
    topic_arn:
        The ``Purchase`` topic's ARN.
    """

    def __init__(self, client: Any, topic_arn: str) -> None:
        self._client = client
        self._topic_arn = topic_arn

    def publish(self, event: PurchaseEvent) -> str:
        """Publish one Purchase event with its filterable attributes; return the SNS message id."""
        try:
            answer = self._client.publish(
                TopicArn=self._topic_arn,
                Message=purchase_message(event),
                MessageAttributes=purchase_attributes(event),
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "publishing the purchase") from exc
        return str(answer["MessageId"])

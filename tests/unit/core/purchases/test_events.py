"""Unit tests of the Purchase event publisher (core/purchases/events.py) on a scripted SNS client."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from core.errors import UpstreamError
from core.purchases.events import PurchasePublisher
from core.purchases.models import PurchaseEvent

TOPIC = "arn:aws:sns:us-east-1:123456789012:notify-test-purchase"
EVENT = PurchaseEvent(
    purchase_id="order-1",
    customer_id="cus_A1",
    amount=4999,
    currency="EUR",
    promo_code="summer24",
    purchased_at=datetime(2024, 8, 7, 14, 20, 5, tzinfo=UTC),
)


class ScriptedSns:
    """Keeps ``publish`` requests; raises ``error`` when set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.requests: list[dict[str, Any]] = []

    def publish(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return {"MessageId": "m-1"}


def test_purchase_publisher_publishes_the_event_json_with_filter_attributes() -> None:
    sns = ScriptedSns()

    message_id = PurchasePublisher(sns, TOPIC).publish(EVENT)

    (request,) = sns.requests
    assert message_id == "m-1"
    assert request["TopicArn"] == TOPIC
    assert json.loads(request["Message"]) == {
        "purchase_id": "order-1",
        "customer_id": "cus_A1",
        "amount": 4999,
        "currency": "eur",
        "promo_code": "SUMMER24",
        "purchased_at": "2024-08-07T14:20:05Z",
    }
    assert request["MessageAttributes"] == {
        "has_promo_code": {"DataType": "String", "StringValue": "true"},
        "promo_code": {"DataType": "String", "StringValue": "SUMMER24"},
        "currency": {"DataType": "String", "StringValue": "eur"},
    }


def test_purchase_publisher_without_promo_code_has_no_promo_code_attribute() -> None:
    sns = ScriptedSns()

    PurchasePublisher(sns, TOPIC).publish(EVENT.model_copy(update={"promo_code": None}))

    attributes = sns.requests[0]["MessageAttributes"]
    assert attributes["has_promo_code"]["StringValue"] == "false"
    assert "promo_code" not in attributes
    assert PurchaseEvent.model_validate_json(sns.requests[0]["Message"]).promo_code is None


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "Throttling", "Message": "scripted"}}, "Publish"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_purchase_publisher_failure_is_upstream(error: Exception) -> None:
    with pytest.raises(UpstreamError, match="publishing the purchase failed"):
        PurchasePublisher(ScriptedSns(error), TOPIC).publish(EVENT)

"""The purchase notification subscriber under moto: SNS events in, deliveries on the delivery queue, once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.models import Integration, IntegrationType, Topic
from core.purchases.notify import purchase_notification_id
from core.purchases.purchases import PurchaseStore
from core.topics import TopicRegistry
from subscribers.sns import InvalidPurchaseEventError
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.subscribers.conftest import PURCHASE_TABLES
from tests.integration.subscribers.purchases import purchase_message, sns_event
from tests.support.aws import NAMES, AwsResources, receive_all

TEMPLATE = "$purchase_id: $amount_display by $email"


@pytest.fixture
def aws_topic(purchases_aws: AwsResources, monkeypatch: pytest.MonkeyPatch) -> AwsResources:
    """The purchase notification's channel/topic (shop/purchases, one Slack integration) and its settings."""
    monkeypatch.setenv("PURCHASE_NOTIFICATION_CHANNEL", "shop")
    monkeypatch.setenv("PURCHASE_NOTIFICATION_TOPIC", "purchases")
    TopicRegistry(purchases_aws.dynamodb, NAMES["TOPICS_TABLE"]).create(
        Topic(
            channel="shop",
            topic="purchases",
            integrations=[
                Integration(
                    name="ops",
                    type=IntegrationType.SLACK,
                    model=TEMPLATE,
                    credentials_ref="/notify/test/integrations/shop/purchases/ops",
                )
            ],
            hash_sha256="0" * 64,
            created_at="2026-01-01T00:00:00.000Z",
            updated_at="2026-01-01T00:00:00.000Z",
        )
    )
    return purchases_aws


def _notify(event: dict[str, Any], context: FakeLambdaContext) -> Any:
    from subscribers.purchase_notify import handler

    return handler(event, context)


def _record(aws: AwsResources) -> Any:
    return PurchaseStore(aws.dynamodb, PURCHASE_TABLES["PURCHASES_TABLE"][0]).get("pi_3PxSample0001")


def test_purchase_notify_handler_same_purchase_twice_queues_deliveries_once(
    aws_topic: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    event = sns_event(purchase_message())

    first = _notify(event, lambda_context)
    second = _notify(event, lambda_context)

    assert (first, second) == (
        {"purchases": {"pi_3PxSample0001": "published"}},
        {"purchases": {"pi_3PxSample0001": "already_notified"}},
    )
    (message,) = receive_all(aws_topic.sqs, aws_topic.delivery_queue_url)
    body = json.loads(message["Body"])
    assert body["notification_id"] == purchase_notification_id("pi_3PxSample0001")
    assert body["content"]["text"] == "pi_3PxSample0001: 25.00 EUR by ada@example.com"
    assert _record(aws_topic).notification_id == body["notification_id"]


def test_purchase_notify_handler_template_missing_variable_recorded_not_raised(
    aws_topic: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    registry = TopicRegistry(aws_topic.dynamodb, NAMES["TOPICS_TABLE"])
    topic = registry.read("shop", "purchases")
    integration = topic.integrations[0].model_copy(update={"model": "$purchase_id for $nickname"})
    registry.replace(topic.model_copy(update={"integrations": [integration]}), topic.updated_at)

    result = _notify(sns_event(purchase_message()), lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "failed"}}
    assert _record(aws_topic).notification_error == "metadata: missing template variables: nickname"
    assert receive_all(aws_topic.sqs, aws_topic.delivery_queue_url) == []


def test_purchase_notify_handler_email_too_long_notifies_without_it(
    aws_topic: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    result = _notify(sns_event(purchase_message(email="a" * 309 + "@example.com")), lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "published"}}
    (message,) = receive_all(aws_topic.sqs, aws_topic.delivery_queue_url)
    assert json.loads(message["Body"])["content"]["text"] == "pi_3PxSample0001: 25.00 EUR by "


def test_purchase_notify_handler_message_no_purchase_fails_the_invocation_after_notifying_the_others(
    aws_topic: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    with pytest.raises(InvalidPurchaseEventError, match="amount"):
        _notify(sns_event(purchase_message(amount=1998.9999999999998), purchase_message()), lambda_context)

    (message,) = receive_all(aws_topic.sqs, aws_topic.delivery_queue_url)
    assert json.loads(message["Body"])["content"]["text"] == "pi_3PxSample0001: 25.00 EUR by ada@example.com"


@pytest.mark.parametrize("code", ["", "SUMMER SALE"])
def test_purchase_notify_handler_empty_or_invalid_promo_code_still_notifies(
    code: str, aws_topic: AwsResources, lambda_context: FakeLambdaContext
) -> None:
    """A publisher's unusable promo code once dropped the whole purchase, its notification included."""
    result = _notify(sns_event(purchase_message(promo_code=code)), lambda_context)

    assert result == {"purchases": {"pi_3PxSample0001": "published"}}
    (message,) = receive_all(aws_topic.sqs, aws_topic.delivery_queue_url)
    assert json.loads(message["Body"])["content"]["text"] == "pi_3PxSample0001: 25.00 EUR by ada@example.com"

"""Helpers of the publish route suites: topics created through the admin API, publishing as API Gateway calls it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.ledger import DeliveryLedger
from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.aws import ADMIN_TOKEN, NAMES, AwsResources, receive_all
from tests.support.events import admin_event, publish_event, topic_body

METADATA = {"order_id": "A-1", "name": "Ada", "total": 12.5}


class Service:
    """The management and publish functions on moto, and what a test reads back from the queue and the ledger."""

    def __init__(self, aws: AwsResources, context: FakeLambdaContext) -> None:
        self.aws = aws
        self._context = context

    def admin(self, method: str, suffix: str = "", body: Any = None, topic: str = "shipped") -> dict[str, Any]:
        """Call a topic route of the management API as the admin."""
        from api.handler import handler

        resource = "/v1/channels/{channel}/topics/{topic}" + suffix
        event = admin_event(method, resource, {"channel": "orders", "topic": topic}, body, ADMIN_TOKEN)
        result: dict[str, Any] = handler(event, self._context)
        return result

    def create_topic(self, body: Any = None, topic: str = "shipped") -> str:
        """Create a topic (the sample one by default) and return its hash."""
        response = self.admin("PUT", body=body or topic_body(), topic=topic)
        assert response["statusCode"] == 201, response["body"]
        topic_hash: str = json.loads(response["body"])["topic_hash"]
        return topic_hash

    def publish(
        self,
        body: Any,
        topic_hash: str | None,
        idempotency_key: str | None = None,
        api_key_id: str | None = "k1a2b3c4d5",
        channel: str = "orders",
        topic: str = "shipped",
    ) -> dict[str, Any]:
        """Call the publish function."""
        from producer.handler import handler

        event = publish_event(channel, topic, body, topic_hash, idempotency_key, api_key_id=api_key_id)
        result: dict[str, Any] = handler(event, self._context)
        return result

    def queued(self) -> list[dict[str, Any]]:
        """Drain the delivery queue."""
        return receive_all(self.aws.sqs, self.aws.delivery_queue_url)

    def ledger(self) -> DeliveryLedger:
        """The delivery ledger, read through its own client."""
        return DeliveryLedger(self.aws.dynamodb, NAMES["DELIVERIES_TABLE"])


@pytest.fixture
def service(aws: AwsResources, lambda_context: FakeLambdaContext) -> Service:
    """The service on moto."""
    return Service(aws, lambda_context)


@pytest.fixture
def topic_hash(service: Service) -> str:
    """The hash of the sample topic orders/shipped, created through the admin API."""
    return service.create_topic()

"""Unit tests of producer/publish.py: the order of checks, on fakes (no AWS)."""

from __future__ import annotations

import json

import pytest

from core.errors import ForbiddenError, MalformedRequestError, NotFoundError
from core.ledger import DeliveryLedger
from core.queue import DeliveryQueue
from core.topics import TopicRegistry
from producer.idempotency import IdempotentPublisher
from producer.publish import PublishCall, publish
from tests.fakes.dynamodb import FakeDynamoDBClient
from tests.fakes.sqs import FakeSqsClient
from tests.support.events import registered_topic_client

TABLES = {"topics": ("channel", "topic"), "deliveries": ("notification_id", "delivery_key"), "idem": ("id",)}


@pytest.fixture
def dynamodb() -> FakeDynamoDBClient:
    return registered_topic_client(TABLES, model="hi $name")


def _publish(dynamodb: FakeDynamoDBClient, sqs: FakeSqsClient, **fields: object) -> dict[str, object]:
    defaults: dict[str, object] = {
        "channel": "orders",
        "topic": "shipped",
        "topic_hash": "right",
        "idempotency_key": None,
        "caller": "k1",
        "body": json.dumps({"metadata": {"name": "Ada"}}),
    }
    call = PublishCall(**{**defaults, **fields})  # type: ignore[arg-type]
    return publish(
        call,
        TopicRegistry(dynamodb, "topics"),
        DeliveryLedger(dynamodb, "deliveries"),
        DeliveryQueue(sqs, "https://sqs.example/q"),
        IdempotentPublisher(dynamodb, "idem"),
    )


def test_publish_valid_call_enqueues_and_returns_ids(dynamodb: FakeDynamoDBClient) -> None:
    sqs = FakeSqsClient()

    outcome = _publish(dynamodb, sqs)

    assert outcome["message_ids"] == {"s": "msg-1"}
    assert json.loads(sqs.sent["msg-1"])["content"] == {"text": "hi Ada"}


def test_publish_missing_hash_is_refused_before_any_read(dynamodb: FakeDynamoDBClient) -> None:
    with pytest.raises(ForbiddenError):
        _publish(dynamodb, FakeSqsClient(), topic_hash=None)

    assert dynamodb.calls == []


def test_publish_unknown_topic_is_not_found_before_the_hash_is_checked(dynamodb: FakeDynamoDBClient) -> None:
    with pytest.raises(NotFoundError):
        _publish(dynamodb, FakeSqsClient(), topic="other", topic_hash="wrong")


def test_publish_wrong_hash_is_forbidden_before_the_body_is_parsed(dynamodb: FakeDynamoDBClient) -> None:
    with pytest.raises(ForbiddenError):
        _publish(dynamodb, FakeSqsClient(), topic_hash="wrong", body="{not json")


def test_publish_malformed_body_writes_nothing(dynamodb: FakeDynamoDBClient) -> None:
    sqs = FakeSqsClient()

    with pytest.raises(MalformedRequestError):
        _publish(dynamodb, sqs, body="{not json")

    assert [name for name, _ in dynamodb.calls] == ["get_item"]
    assert sqs.batches == []

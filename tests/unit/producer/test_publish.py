"""Unit tests of producer/publish.py: the order of checks, on fakes (no AWS)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from core.errors import ForbiddenError, InvalidRequestError, MalformedRequestError, NotFoundError
from core.ledger import DeliveryLedger
from core.queue import DeliveryQueue
from core.topics import TopicRegistry
from core.validation import NAME_RULE
from producer.idempotency import IdempotentPublisher
from producer.publish import PublishCall, publish
from tests.fakes.dynamodb import FakeDynamoDBClient
from tests.fakes.lambda_context import FakeLambdaContext
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


@pytest.mark.parametrize("given", ["\ud800", "ключ-😀"], ids=["lone-surrogate", "non-ascii"])
def test_publish_hash_that_is_no_ascii_is_forbidden_not_an_error(dynamodb: FakeDynamoDBClient, given: str) -> None:
    # A lone surrogate could not be encoded: a 500 from a header.
    with pytest.raises(ForbiddenError):
        _publish(dynamodb, FakeSqsClient(), topic_hash=given)


def test_publish_malformed_body_writes_nothing(dynamodb: FakeDynamoDBClient) -> None:
    sqs = FakeSqsClient()

    with pytest.raises(MalformedRequestError):
        _publish(dynamodb, sqs, body="{not json")

    assert [name for name, _ in dynamodb.calls] == ["get_item"]
    assert sqs.batches == []


@pytest.mark.parametrize(
    ("field", "names"),
    [
        pytest.param("topic", {"topic": "t" * 1025}, id="topic-over-dynamodb-sort-key-limit"),
        pytest.param("channel", {"channel": "c" * 2049}, id="channel-over-dynamodb-partition-key-limit"),
        pytest.param("topic", {"topic": "t" * 65}, id="topic-over-name-rule"),
        pytest.param("channel", {"channel": "orders\n"}, id="channel-trailing-newline"),
    ],
)
def test_publish_name_no_topic_can_have_is_not_found_before_any_read(
    dynamodb: FakeDynamoDBClient, field: str, names: dict[str, str]
) -> None:
    with pytest.raises(NotFoundError) as raised:
        _publish(dynamodb, FakeSqsClient(), **names)

    assert str(raised.value) == f"{field}: is not a valid name, so no such {field} exists ({NAME_RULE})"
    assert dynamodb.calls == []


def test_publish_overlong_topic_without_hash_is_still_refused_for_the_hash(dynamodb: FakeDynamoDBClient) -> None:
    with pytest.raises(ForbiddenError):
        _publish(dynamodb, FakeSqsClient(), topic="t" * 1025, topic_hash=None)


def test_publish_number_over_the_digit_limit_is_malformed_and_writes_nothing(dynamodb: FakeDynamoDBClient) -> None:
    sqs = FakeSqsClient()

    with pytest.raises(MalformedRequestError, match="digits"):
        _publish(dynamodb, sqs, body='{"metadata": {"name": ' + "1" * 5000 + "}}")

    assert sqs.batches == []


@pytest.mark.parametrize("text", ["\\ud800", "\\uffff"])
@pytest.mark.parametrize("idempotency_key", [None, "k-1"])
def test_publish_unsendable_text_is_invalid_naming_the_field_and_writes_nothing(
    dynamodb: FakeDynamoDBClient, text: str, idempotency_key: str | None
) -> None:
    sqs = FakeSqsClient()

    with pytest.raises(InvalidRequestError) as raised:
        _publish(dynamodb, sqs, body='{"metadata": {"name": "' + text + '"}}', idempotency_key=idempotency_key)

    assert raised.value.problem.startswith("metadata.name: must hold only characters a message can carry")
    assert [name for name, _ in dynamodb.calls] == ["get_item"]
    assert sqs.batches == []


def test_publish_result_the_idempotency_store_did_not_save_is_kept_on_the_notification_record(
    dynamodb: FakeDynamoDBClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    update_item = dynamodb.update_item

    def refuse_saving_the_result(TableName: str, **kwargs: Any) -> dict[str, Any]:
        if TableName == "idem":
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "-"}}, "UpdateItem"
            )
        return update_item(TableName=TableName, **kwargs)

    monkeypatch.setattr(dynamodb, "update_item", refuse_saving_the_result)
    idempotency = IdempotentPublisher(dynamodb, "idem")
    idempotency.register_context(FakeLambdaContext())
    call = PublishCall("orders", "shipped", "right", "k-1", "k1", json.dumps({"metadata": {"name": "Ada"}}))

    outcome = publish(
        call,
        TopicRegistry(dynamodb, "topics"),
        DeliveryLedger(dynamodb, "deliveries"),
        DeliveryQueue(FakeSqsClient(), "https://sqs.example/q"),
        idempotency,
    )

    # A retry, once the in-progress idempotency record lapses, finds every delivery enqueued: it sends nothing again.
    record = DeliveryLedger(dynamodb, "deliveries").get_record(str(outcome["notification_id"]))
    assert outcome["message_ids"] == {"s": "msg-1"}
    assert record.enqueued == outcome["message_ids"]

"""Unit tests of core/fanout.py: the notification record, delivery messages and what is reported when SQS refuses."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from core.errors import (
    ConflictError,
    EnqueueError,
    InvalidRequestError,
    MissingTemplateVariablesError,
    PayloadTooLargeError,
)
from core.fanout import IdempotentPublish, build_messages, fan_out, record_enqueued
from core.ledger import Delivery, DeliveryLedger, DeliveryRow
from core.models import DeliveryStatus, Integration, IntegrationType, Topic
from core.queue import DELIVERY_MESSAGE_BYTES_LIMIT, MESSAGE_BYTES_LIMIT, DeliveryQueue
from tests.fakes.dynamodb import FakeDynamoDBClient
from tests.fakes.sqs import FakeSqsClient

DELIVERIES = "deliveries"
URL = "https://sqs.us-east-1.amazonaws.com/123456789012/deliveries"


def _integration_name(body: str) -> str:
    name: str = json.loads(body)["integration"]["name"]
    return name


def _topic(count: int = 2, model: Any = "hello $name") -> Topic:
    return Topic(
        channel="orders",
        topic="shipped",
        integrations=[
            Integration(
                name=f"slack-{index}",
                type=IntegrationType.SLACK,
                model=model,
                credentials_ref=f"/notify/test/integrations/orders/shipped/slack-{index}",
            )
            for index in range(count)
        ],
        hash_sha256="0" * 64,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )


@pytest.fixture
def dynamodb() -> FakeDynamoDBClient:
    return FakeDynamoDBClient({DELIVERIES: ("notification_id", "delivery_key")})


@pytest.fixture
def ledger(dynamodb: FakeDynamoDBClient) -> DeliveryLedger:
    return DeliveryLedger(dynamodb, DELIVERIES)


def _statuses(ledger: DeliveryLedger, notification_id: str, names: list[str]) -> dict[str, tuple[str, str | None]]:
    entries = {name: ledger.get_entry(notification_id, name) for name in names}
    return {name: (entry.status.value, entry.last_error) for name, entry in entries.items() if entry}


def test_fan_out_writes_one_record_and_enqueues_one_message_each(
    dynamodb: FakeDynamoDBClient, ledger: DeliveryLedger
) -> None:
    sqs = FakeSqsClient()

    result = fan_out(_topic(3), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL), caller="key-1")

    names = ["slack-0", "slack-1", "slack-2"]
    record = ledger.get_record(result.notification_id)
    assert set(result.message_ids) == set(names)
    assert [call for call, _ in dynamodb.calls if call != "get_item"] == ["put_item"]
    assert (record.caller, record.delivery_count, record.source) == ("key-1", 3, "publish")
    assert record.deliveries == tuple(Delivery(key=name, integration=name, type="slack") for name in names)
    assert _statuses(ledger, result.notification_id, names) == {}
    assert sorted(_integration_name(body) for body in sqs.sent.values()) == names


def test_fan_out_forty_integrations_send_four_batches(ledger: DeliveryLedger) -> None:
    sqs = FakeSqsClient()

    fan_out(_topic(40), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL))

    assert sorted(len(batch) for batch in sqs.batches) == [10, 10, 10, 10]


def test_fan_out_message_is_versioned_contract_with_reference_only(ledger: DeliveryLedger) -> None:
    sqs = FakeSqsClient()

    result = fan_out(_topic(1), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL), notification_id="n-1")

    body = json.loads(sqs.sent[result.message_ids["slack-0"]])
    assert body == {
        "v": 2,
        "notification_id": "n-1",
        "delivery_key": "slack-0",
        "channel": "orders",
        "topic": "shipped",
        "created_at": body["created_at"],
        "integration": {
            "name": "slack-0",
            "type": "slack",
            "target": {},
            "credentials_ref": "/notify/test/integrations/orders/shipped/slack-0",
        },
        "content": {"text": "hello Ada"},
        "attempt": 0,
        "slot_reserved": False,
    }


def test_fan_out_missing_variables_raises_before_any_write(
    dynamodb: FakeDynamoDBClient, ledger: DeliveryLedger
) -> None:
    sqs = FakeSqsClient()
    topic = _topic(1).model_copy(
        update={
            "integrations": [
                *_topic(1).integrations,
                Integration(name="e", type=IntegrationType.EMAIL, model={"subject": "$s", "text": "$t"}),
            ]
        }
    )

    with pytest.raises(MissingTemplateVariablesError) as raised:
        fan_out(topic, {}, ledger, DeliveryQueue(sqs, URL))

    assert raised.value.names == ["name", "s", "t"]
    assert dynamodb.calls == []
    assert sqs.batches == []


def test_fan_out_rendered_message_over_limit_raises_payload_too_large(ledger: DeliveryLedger) -> None:
    sqs = FakeSqsClient()

    with pytest.raises(PayloadTooLargeError, match="slack-0"):
        fan_out(_topic(1), {"name": "x" * 300_000}, ledger, DeliveryQueue(sqs, URL))

    assert sqs.batches == []


def _name_for_size(size: int) -> str:
    """Return the ``name`` variable that makes the one message of ``_topic(1)`` ``size`` bytes long."""
    [probe] = build_messages(_topic(1), {"name": ""}, "n-1", "2026-01-01T00:00:00.000Z")
    return "x" * (size - len(probe.encode()))


def test_fan_out_message_over_the_room_the_consumer_needs_raises_payload_too_large_naming_the_limit(
    ledger: DeliveryLedger,
) -> None:
    sqs = FakeSqsClient()
    name = _name_for_size(DELIVERY_MESSAGE_BYTES_LIMIT + 1)

    with pytest.raises(PayloadTooLargeError) as raised:
        fan_out(_topic(1), {"name": name}, ledger, DeliveryQueue(sqs, URL), notification_id="n-1")

    assert DELIVERY_MESSAGE_BYTES_LIMIT + 1 < MESSAGE_BYTES_LIMIT
    assert str(raised.value) == (
        "the rendered message of integration 'slack-0' exceeds 248 KiB (SQS's 256 KiB less 8 KiB kept for its retries)"
    )
    assert sqs.batches == []


def test_fan_out_message_of_the_largest_size_is_enqueued(ledger: DeliveryLedger) -> None:
    sqs = FakeSqsClient()
    name = _name_for_size(DELIVERY_MESSAGE_BYTES_LIMIT)

    fan_out(_topic(1), {"name": name}, ledger, DeliveryQueue(sqs, URL), notification_id="n-1")

    assert [len(body.encode()) for body in sqs.sent.values()] == [DELIVERY_MESSAGE_BYTES_LIMIT]


def _webhook_topic(model: Any) -> Topic:
    return _topic(1).model_copy(
        update={
            "integrations": [
                Integration(name="w", type=IntegrationType.WEBHOOK, model=model, target={"url": "https://h.example/x"})
            ]
        }
    )


def test_build_messages_subscribers_text_too_long_raises_payload_too_large_naming_the_integration() -> None:
    model = {"text": "Order $order shipped"}
    integration = Integration(name="followers", type=IntegrationType.SUBSCRIBERS, model=model, target={})
    topic = _topic(1).model_copy(update={"integrations": [integration]})

    with pytest.raises(PayloadTooLargeError) as raised:
        build_messages(topic, {"order": "x" * 5000}, "n-1", "2026-01-01T00:00:00.000Z")

    assert str(raised.value) == (
        "integration 'followers': model.text renders to 5014 characters with this metadata; a subscribers "
        "integration sends at most 4096"
    )


@pytest.mark.parametrize("model", [pytest.param("$v " * 600, id="text"), pytest.param(["$v"] * 600, id="json")])
def test_build_messages_large_value_repeated_raises_payload_too_large_naming_the_integration(model: Any) -> None:
    with pytest.raises(PayloadTooLargeError) as raised:
        build_messages(_webhook_topic(model), {"v": "x" * 200_000}, "n-1", "2026-01-01T00:00:00.000Z")

    assert str(raised.value) == (
        "the rendered message of integration 'w' exceeds 248 KiB (SQS's 256 KiB less 8 KiB kept for its retries)"
    )


@pytest.mark.parametrize("model", [pytest.param("$v " * 600, id="text"), pytest.param(["$v"] * 600, id="json")])
def test_build_messages_large_value_repeated_is_refused_before_its_message_is_built(model: Any) -> None:
    # 600 copies of 200 KB are 120 MB: refused only once built, a publish could take a Lambda's memory.
    topic, metadata = _webhook_topic(model), {"v": "x" * 200_000}

    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLargeError):
            build_messages(topic, metadata, "n-1", "2026-01-01T00:00:00.000Z")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 * 1024 * 1024


def test_fan_out_entry_failed_once_then_sent_reports_all(ledger: DeliveryLedger) -> None:
    sqs = FakeSqsClient(fail_bodies={"slack-1": 1}, key=_integration_name)

    result = fan_out(_topic(3), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL))

    assert set(result.message_ids) == {"slack-0", "slack-1", "slack-2"}
    assert _statuses(ledger, result.notification_id, list(result.message_ids)) == {}


def test_fan_out_entry_still_failing_raises_and_marks_only_it_failed(ledger: DeliveryLedger) -> None:
    sqs = FakeSqsClient(fail_bodies={"slack-1": 2}, key=_integration_name)

    with pytest.raises(EnqueueError) as raised:
        fan_out(_topic(3), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL), notification_id="n-2")

    assert raised.value.notification_id == "n-2"
    assert raised.value.failed == {"slack-1": "InternalError"}
    assert _statuses(ledger, "n-2", ["slack-0", "slack-1", "slack-2"]) == {
        "slack-1": ("failed", "not enqueued: InternalError"),
    }
    assert sorted(_integration_name(body) for body in sqs.sent.values()) == ["slack-0", "slack-2"]


def test_fan_out_queue_call_error_marks_row_failed(ledger: DeliveryLedger) -> None:
    sqs = FakeSqsClient(error_code="InternalError")

    with pytest.raises(EnqueueError):
        fan_out(_topic(1), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL), notification_id="n-3")

    entry = ledger.get_entry("n-3", "slack-0")
    assert entry is not None
    assert entry.status is DeliveryStatus.FAILED


# --- idempotent publishes: one record per key, a retry finishes it ------------------------------------------------


class ConditionalDynamoDB(FakeDynamoDBClient):
    """The fake with what finishing a notification needs: a conditional put that refuses an existing item, a query of
    one notification's items, and deletes."""

    def put_item(self, TableName: str, Item: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Store ``Item``; with a condition, refuse it when its key exists."""
        if "ConditionExpression" in kwargs and self._key(TableName, Item) in self.tables[TableName]:
            self.calls.append(("put_item", {"TableName": TableName, "Item": Item, **kwargs}))
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException", "Message": "-"}}, "PutItem")
        return super().put_item(TableName, Item, **kwargs)

    def query(self, TableName: str, ExpressionAttributeValues: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Return every item of the notification named by ``:n``, in key order."""
        self.calls.append(("query", {"TableName": TableName, **kwargs}))
        wanted = ExpressionAttributeValues[":n"]["S"]
        items = sorted(self.tables[TableName].items())
        return {"Items": [dict(item) for key, item in items if key[0] == wanted]}

    def delete_item(self, TableName: str, Key: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Delete the item under ``Key``, ignoring any condition."""
        self.calls.append(("delete_item", {"TableName": TableName, "Key": Key, **kwargs}))
        self.tables[TableName].pop(self._key(TableName, Key), None)
        return {}


ONCE = IdempotentPublish(notification_id="n-once", request_digest="digest-1", window_seconds=86400)


@pytest.fixture
def conditional() -> ConditionalDynamoDB:
    return ConditionalDynamoDB({DELIVERIES: ("notification_id", "delivery_key")})


def _writes(dynamodb: FakeDynamoDBClient) -> list[str]:
    return [call for call, _ in dynamodb.calls if call not in ("get_item", "query")]


def test_fan_out_idempotent_success_costs_a_one_key_query_and_one_conditional_put(
    conditional: ConditionalDynamoDB,
) -> None:
    ledger = DeliveryLedger(conditional, DELIVERIES)

    result = fan_out(_topic(3), {"name": "Ada"}, ledger, DeliveryQueue(FakeSqsClient(), URL), idempotent=ONCE)

    record = ledger.get_record("n-once")
    assert result.notification_id == "n-once"
    assert _writes(conditional) == ["put_item"]
    (query, asked), (put, written) = conditional.calls[:2]
    assert (query, asked["Limit"], put) == ("query", 1, "put_item")
    assert "ConditionExpression" in written
    assert (record.request_digest, record.enqueued) == ("digest-1", None)


def test_fan_out_entry_still_failing_keeps_the_sent_message_ids_on_the_record(
    dynamodb: FakeDynamoDBClient, ledger: DeliveryLedger
) -> None:
    sqs = FakeSqsClient(fail_bodies={"slack-1": 2}, key=_integration_name)

    with pytest.raises(EnqueueError):
        fan_out(_topic(3), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL), notification_id="n-2")

    sent = {_integration_name(body): message_id for message_id, body in sqs.sent.items()}
    assert ledger.get_record("n-2").enqueued == sent == {"slack-0": "msg-1", "slack-2": "msg-2"}
    # The record, then its enqueued ids alone (not the whole record again), then the unsent delivery's failed row.
    assert _writes(dynamodb) == ["put_item", "update_item", "put_item"]


def test_fan_out_retry_enqueues_only_what_was_not_enqueued(conditional: ConditionalDynamoDB) -> None:
    ledger = DeliveryLedger(conditional, DELIVERIES)
    sqs = FakeSqsClient(fail_bodies={"slack-1": 2}, key=_integration_name)
    with pytest.raises(EnqueueError):
        fan_out(_topic(3), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL), idempotent=ONCE)

    result = fan_out(_topic(3), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL), idempotent=ONCE)

    bodies = [json.loads(body) for body in sqs.sent.values()]
    assert result.resumed
    assert sorted(body["integration"]["name"] for body in bodies) == ["slack-0", "slack-1", "slack-2"]
    assert {body["created_at"] for body in bodies} == {ledger.get_record("n-once").created_at}
    # The retry's delivery read the topic (its credentials) now: its retry window opens now, the first attempt's at
    # the notification's creation.
    assert [body.get("window_start") is not None for body in bodies] == [False, False, True]
    assert result.message_ids == {"slack-0": "msg-1", "slack-1": "msg-3", "slack-2": "msg-2"}
    assert ledger.get_entry("n-once", "slack-1") is None
    assert ledger.get_record("n-once").enqueued == result.message_ids


def test_fan_out_retry_with_another_request_raises_conflict(conditional: ConditionalDynamoDB) -> None:
    ledger = DeliveryLedger(conditional, DELIVERIES)
    sqs = FakeSqsClient(fail_bodies={"slack-1": 2}, key=_integration_name)
    with pytest.raises(EnqueueError):
        fan_out(_topic(3), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL), idempotent=ONCE)

    with pytest.raises(ConflictError):
        fan_out(
            _topic(3), {"name": "Bob"}, ledger, DeliveryQueue(sqs, URL), idempotent=ONCE._replace(request_digest="2")
        )

    assert len(sqs.sent) == 2


def test_fan_out_retry_keeps_a_failed_row_the_consumer_wrote(conditional: ConditionalDynamoDB) -> None:
    ledger = DeliveryLedger(conditional, DELIVERIES)
    sqs = FakeSqsClient(error_code="InternalError")
    with pytest.raises(EnqueueError):
        fan_out(_topic(2), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL), idempotent=ONCE)
    row = DeliveryRow(integration="slack-0", type="slack")
    ledger.update("n-once", "slack-0", DeliveryStatus.FAILED, row=row, attempts=1, last_error="channel_is_archived")

    fan_out(_topic(2), {"name": "Ada"}, ledger, DeliveryQueue(FakeSqsClient(), URL), idempotent=ONCE)

    kept = ledger.get_entry("n-once", "slack-0")
    assert kept is not None
    assert (kept.status, kept.last_error) == (DeliveryStatus.FAILED, "channel_is_archived")
    assert ledger.get_entry("n-once", "slack-1") is None


def test_fan_out_retry_after_record_enqueued_sends_nothing_and_returns_the_same_ids(
    conditional: ConditionalDynamoDB,
) -> None:
    ledger = DeliveryLedger(conditional, DELIVERIES)
    sqs = FakeSqsClient()
    first = fan_out(_topic(3), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL), idempotent=ONCE)
    record_enqueued(ledger, first)

    retried = fan_out(_topic(3), {"name": "Ada"}, ledger, DeliveryQueue(sqs, URL), idempotent=ONCE)

    assert retried.message_ids == first.message_ids
    assert len(sqs.sent) == 3


def test_record_enqueued_ledger_failure_is_logged_not_raised(
    dynamodb: FakeDynamoDBClient, ledger: DeliveryLedger, monkeypatch: pytest.MonkeyPatch, logs: Callable[[], str]
) -> None:
    result = fan_out(_topic(1), {"name": "Ada"}, ledger, DeliveryQueue(FakeSqsClient(), URL), notification_id="n-1")

    def refuse(**_: Any) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "-"}}, "UpdateItem")

    monkeypatch.setattr(dynamodb, "update_item", refuse)

    record_enqueued(ledger, result)

    assert "ledger write of enqueued deliveries failed" in logs()
    assert ledger.get_record("n-1").enqueued is None


def test_record_enqueued_keeps_what_the_expansion_worker_wrote_on_the_record(ledger: DeliveryLedger) -> None:
    # A whole record put undid the count of subscribers the expansion worker had written meanwhile (or it, this).
    result = fan_out(_topic(1), {"name": "Ada"}, ledger, DeliveryQueue(FakeSqsClient(), URL), notification_id="n-1")
    ledger.record_notification(ledger.get_record("n-1")._replace(delivery_count=501))

    record_enqueued(ledger, result)

    record = ledger.get_record("n-1")
    assert (record.delivery_count, record.enqueued) == (501, result.message_ids)


@pytest.mark.parametrize(
    ("kind", "model", "values", "message"),
    [
        (IntegrationType.SLACK, "$msg", {"msg": ""}, "model renders no text"),
        (IntegrationType.TELEGRAM, "$msg", {"msg": "  "}, "model renders no text"),
        (IntegrationType.EMAIL, {"subject": "$title", "text": "Hi"}, {"title": ""}, "model.subject renders no text"),
        (IntegrationType.PUSH, "$msg", {"msg": ""}, "model renders no text"),
        (IntegrationType.PUSH, {"APNS": {"aps": {"alert": "$note"}}}, {"note": "x" * 5000}, "APNS payload takes"),
        (IntegrationType.SUBSCRIBERS, {"text": "Hi", "subject": "$title"}, {"title": ""}, "model.subject renders no"),
        (IntegrationType.SUBSCRIBERS, {"text": "Order $order"}, {"order": "A\x001"}, "model.text renders NUL"),
    ],
    ids=["slack", "telegram-spaces", "email-subject", "push", "push-platform-limit", "subscribers-subject", "nul"],
)
def test_build_messages_content_its_channel_can_never_send_is_refused_naming_the_integration(
    kind: IntegrationType, model: Any, values: dict[str, Any], message: str
) -> None:
    """Accepted (200), each failed every delivery for good: nothing to send, or a payload its platform refuses."""
    integration = Integration(name="one", type=kind, model=model, target={})
    topic = _topic(1).model_copy(update={"integrations": [integration]})

    with pytest.raises(InvalidRequestError) as raised:
        build_messages(topic, values, "n-1", "2026-01-01T00:00:00.000Z")

    assert str(raised.value).startswith("metadata: integration 'one': ")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("kind", "values", "message"),
    [
        (IntegrationType.BROWSER, {"msg": "x" * 140 * 1024}, "the browser frame takes"),
        (IntegrationType.PUSH, {"msg": "x" * 250_000}, "the push message takes"),
    ],
    ids=["browser-frame", "push-message"],
)
def test_build_messages_content_over_its_channels_size_under_the_queues_is_refused_as_too_large(
    kind: IntegrationType, values: dict[str, Any], message: str
) -> None:
    """Under the 248 KiB a delivery message carries, over what the channel sends: accepted, it failed every delivery."""
    integration = Integration(name="one", type=kind, model="$msg", target={})
    topic = _topic(1).model_copy(update={"integrations": [integration]})

    with pytest.raises(PayloadTooLargeError, match=rf"^integration 'one': {message}"):
        build_messages(topic, values, "n-1", "2026-01-01T00:00:00.000Z")


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        (IntegrationType.EMAIL, {"subject": "Order", "text": "$plain", "html": "<p>Order shipped</p>"}),
        (IntegrationType.PUSH, "$plain"),
    ],
    ids=["html-email-text-of-a-space", "push"],
)
def test_build_messages_text_of_spaces_its_provider_takes_is_accepted(kind: IntegrationType, model: Any) -> None:
    """SES sends an HTML email whose text part is a space, SNS a push of one: refused at publish, such a stored topic
    answered 422 to every publish."""
    integration = Integration(name="one", type=kind, model=model, target={})
    topic = _topic(1).model_copy(update={"integrations": [integration]})

    [body] = build_messages(topic, {"plain": " "}, "n-1", "2026-01-01T00:00:00.000Z")

    assert json.loads(body)["content"]["text"] == " "

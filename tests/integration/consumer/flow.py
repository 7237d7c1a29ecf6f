"""Drive the consumer as Lambda's SQS poller does: enqueue delivery messages, receive them, call the handler."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from core.clients import get_ledger
from core.ledger import Delivery, LedgerEntry, NotificationRecord, utc_now
from tests.fakes.lambda_context import FakeLambdaContext
from tests.support.aws import ACCOUNT, REGION, AwsResources
from tests.support.events import load_event

CREDENTIALS_PREFIX = "/notify/test/integrations/orders/shipped"


def delivery_message(
    kind: str,
    content: dict[str, Any],
    target: dict[str, Any] | None = None,
    name: str | None = None,
    credentials_ref: str | None = None,
    notification_id: str | None = None,
    rate_per_second: float | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """Return a delivery message body (version 2) for one integration, created now unless told otherwise."""
    integration: dict[str, Any] = {"name": name or f"{kind}-1", "type": kind, "target": target or {}}
    if credentials_ref:
        integration["credentials_ref"] = credentials_ref
    if rate_per_second:
        integration["rate_per_second"] = rate_per_second
    return {
        "v": 2,
        "notification_id": notification_id or str(uuid.uuid4()),
        "delivery_key": integration["name"],
        "channel": "orders",
        "topic": "shipped",
        "created_at": created_at or utc_now(),
        "integration": integration,
        "content": content,
        "attempt": 0,
    }


def version_1(message: dict[str, Any]) -> dict[str, Any]:
    """Return the same delivery as a version 1 body, as the producer wrote them before version 2."""
    old = {key: value for key, value in message.items() if key not in ("delivery_key", "attempt")}
    return {**old, "v": 1}


def put_credentials(aws: AwsResources, name: str, secret: dict[str, str]) -> str:
    """Store credentials as the admin API does (a SecureString JSON object) and return their reference."""
    ref = f"{CREDENTIALS_PREFIX}/{name}"
    aws.ssm.put_parameter(Name=ref, Value=json.dumps(secret), Type="SecureString", Overwrite=True)
    return ref


def enqueue(aws: AwsResources, *messages: dict[str, Any] | str) -> None:
    """Write the notification record of the well-formed messages, as the producer does, and queue every body."""
    for message in messages:
        if isinstance(message, dict):
            integration = message["integration"]
            key = message.get("delivery_key", integration["name"])
            get_ledger().record_notification(
                NotificationRecord(
                    notification_id=message["notification_id"],
                    source="publish",
                    channel=message["channel"],
                    topic=message["topic"],
                    created_at=message["created_at"],
                    caller="k1a2b3c4d5",
                    delivery_count=1,
                    deliveries=(Delivery(key=key, integration=integration["name"], type=integration["type"]),),
                )
            )
        body = message if isinstance(message, str) else json.dumps(message)
        aws.sqs.send_message(QueueUrl=aws.delivery_queue_url, MessageBody=body)


def receive(aws: AwsResources, limit: int = 10) -> list[dict[str, Any]]:
    """Receive up to ``limit`` visible messages from the delivery queue, as the poller does."""
    response = aws.sqs.receive_message(
        QueueUrl=aws.delivery_queue_url, MaxNumberOfMessages=limit, AttributeNames=["All"], WaitTimeSeconds=0
    )
    messages: list[dict[str, Any]] = response.get("Messages", [])
    return messages


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the event Lambda passes for received SQS messages, shaped like ``tests/events/sqs_event.json``."""
    template = load_event("sqs_event.json")["Records"][0]
    records = []
    for message in messages:
        record = copy.deepcopy(template)
        record.update(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "md5OfBody": message["MD5OfBody"],
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:notify-test-deliveries",
            }
        )
        record["attributes"].update({key: str(value) for key, value in message.get("Attributes", {}).items()})
        records.append(record)
    return {"Records": records}


def consume(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Call the consumer handler with an event of ``messages`` and return its answer."""
    from consumer.handler import handler

    result: dict[str, Any] = handler(sqs_event(messages), FakeLambdaContext())
    return result


def consume_once(aws: AwsResources) -> dict[str, Any]:
    """Receive what is visible on the delivery queue and hand it to the consumer."""
    return consume(receive(aws))


def failed_ids(result: dict[str, Any]) -> set[str]:
    """Return the message ids a batch response reports failed."""
    return {failure["itemIdentifier"] for failure in result["batchItemFailures"]}


def entry(message: dict[str, Any]) -> LedgerEntry:
    """Return the ledger row of a delivery message."""
    key = message.get("delivery_key", message["integration"]["name"])
    found = get_ledger().get_entry(message["notification_id"], key)
    assert found is not None
    return found


def visible_in(aws: AwsResources, message_id: str) -> float:
    """Return in how many seconds a message of the delivery queue becomes visible again (moto's own state)."""
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[ACCOUNT][REGION].queues["notify-test-deliveries"]
    message = next(message for message in queue._messages if message.id == message_id)
    return float((message.visible_at - unix_time_millis()) / 1000)

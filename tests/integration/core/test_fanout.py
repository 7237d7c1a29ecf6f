"""Integration tests of core/fanout.py on moto: what a publish's record says of the deliveries it could not enqueue."""

from __future__ import annotations

from typing import Any

from core.fanout import IdempotentPublish, fan_out, record_enqueued
from core.ledger import DeliveryLedger
from core.models import DeliveryStatus, Integration, IntegrationType, Topic
from core.queue import DeliveryQueue
from tests.support.aws import NAMES, AwsResources

ONCE = IdempotentPublish(notification_id="n-1", request_digest="digest-1", window_seconds=86400)


def _topic(count: int) -> Topic:
    integrations = [
        Integration(
            name=f"slack-{index}",
            type=IntegrationType.SLACK,
            model="hello $name",
            credentials_ref=f"/notify/test/integrations/orders/shipped/slack-{index}",
        )
        for index in range(count)
    ]
    stamp = "2026-01-01T00:00:00.000Z"
    return Topic(
        channel="orders",
        topic="shipped",
        integrations=integrations,
        hash_sha256="0" * 64,
        created_at=stamp,
        updated_at=stamp,
    )


def _refuse_failed_rows(params: dict[str, Any], **_: Any) -> None:
    # A failed row's write (a PutItem only where no row is) goes to a table that is not there: refused for real.
    if params.get("ConditionExpression") == "attribute_not_exists(#s)":
        params["TableName"] = "notify-test-no-such-table"


def test_record_enqueued_after_a_retry_keeps_a_removed_integrations_delivery_failed(aws: AwsResources) -> None:
    """The retry of a publish whose first attempt died before its answer was saved: slack-1, removed from the topic
    since, is not enqueued and its failed row's write fails. The answer's ids, written when the idempotency store
    could not save the answer, removed it from the record's unsent: it read queued for good."""
    ledger = DeliveryLedger(aws.dynamodb, NAMES["DELIVERIES_TABLE"])
    queue = DeliveryQueue(aws.sqs, aws.env["DELIVERY_QUEUE_URL"])
    fan_out(_topic(2), {"name": "Ada"}, ledger, queue, idempotent=ONCE)
    aws.dynamodb.meta.events.register("before-parameter-build.dynamodb.PutItem", _refuse_failed_rows)
    try:
        result = fan_out(_topic(1), {"name": "Ada"}, ledger, queue, idempotent=ONCE)
    finally:
        aws.dynamodb.meta.events.unregister("before-parameter-build.dynamodb.PutItem", _refuse_failed_rows)
    before = {entry.delivery_key: entry.status for entry in ledger.page("n-1").entries}

    record_enqueued(ledger, result)

    after = {entry.delivery_key: entry.status for entry in ledger.page("n-1").entries}
    assert before["slack-1"] is DeliveryStatus.FAILED
    assert after == {"slack-0": DeliveryStatus.QUEUED, "slack-1": DeliveryStatus.FAILED}

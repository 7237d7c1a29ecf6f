"""Integration tests of the delivery handler (consumer/handler.py) on moto with a loopback receiver: what SQS refuses.

A dead letter the dead-letter queue refuses leaves the delivery ``dead`` at once, and its message, kept, is only ever
buried again, never sent; a copy SQS refuses as too large ends the delivery ``failed``; a body whose values no ledger
row or clock can hold is buried as malformed.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from core import clients
from core.errors import UpstreamError
from core.models import DeliveryStatus
from core.queue import DeadLetterQueue
from core.times import iso_time
from tests.fakes.lambda_context import FakeLambdaContext
from tests.integration.consumer.flow import (
    consume,
    consume_once,
    dead_letters,
    delivery_message,
    enqueue,
    entry,
    failed_ids,
    on_queue,
    receive,
)
from tests.support.aws import ADMIN_TOKEN, AwsResources
from tests.support.events import admin_event, response_json
from tests.support.receivers import Answer, Receiver

DLQ = "notify-test-deliveries-dlq"


def _webhook(receiver: Receiver, **changes: Any) -> dict[str, Any]:
    message = delivery_message("webhook", {"text": "order 42 shipped"}, {"url": receiver.url + "/hook"}, name="hook")
    return {**message, **changes}


def _refuse(*args: object) -> None:
    raise UpstreamError("sending to the dead-letter queue failed (ThrottlingException)")


def _bury_refused_once(aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Enqueue a delivery that fails with its one attempt allowed and consume it while the dead-letter queue refuses;
    return its message, kept on the queue and visible again."""
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    monkeypatch.setenv("RETRY_BASE_SECONDS", "0.2")
    clients.reset()
    receiver.default = Answer(500, b"")
    message = _webhook(receiver)
    enqueue(aws, message)
    with monkeypatch.context() as refusing:
        refusing.setattr(DeadLetterQueue, "bury", _refuse)
        kept = consume(receive(aws), aws)
    assert len(failed_ids(kept)) == 1
    # Hidden for one backoff step, rounded up to a second.
    time.sleep(1.1)
    return message


def test_handler_dead_letter_refused_leaves_the_delivery_dead_at_once(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _bury_refused_once(consumer_aws, receiver, monkeypatch)

    row = entry(message)
    assert (row.status, row.attempts, row.last_error) == (
        DeliveryStatus.DEAD,
        1,
        "1 attempts made: webhook: HTTP 500",
    )


def test_handler_message_kept_for_its_dead_letter_is_buried_when_it_comes_back_and_never_sent_again(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _bury_refused_once(consumer_aws, receiver, monkeypatch)

    result = consume(receive(consumer_aws), consumer_aws)

    assert (failed_ids(result), len(receiver.requests), on_queue()) == (set(), 1, [])
    [dead] = dead_letters(consumer_aws)
    assert (json.loads(dead["Body"])["attempt"], dead["MessageAttributes"]["last_error"]["StringValue"]) == (
        1,
        "1 attempts made: webhook: HTTP 500",
    )
    assert [(record["attempt"], record["status"]) for record in entry(message).history] == [(1, "dead")]


def test_handler_letter_buried_after_a_refusal_is_redriven_and_delivered(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.handler import handler as api_handler

    message = _bury_refused_once(consumer_aws, receiver, monkeypatch)
    consume_once(consumer_aws)
    receiver.default = Answer(200)

    redriven = response_json(
        api_handler(admin_event("POST", "/v1/dead-letters/redrive", token=ADMIN_TOKEN), FakeLambdaContext())
    )
    consume_once(consumer_aws)

    row = entry(message)
    assert redriven == {"redriven": 1, "more": False}
    assert (row.status, row.attempts, row.redriven, len(receiver.requests)) == (DeliveryStatus.DELIVERED, 2, 1, 2)
    assert on_queue(DLQ) == []


def test_handler_retry_copy_too_large_for_the_queue_ends_failed_and_is_sent_once(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    # A queue of 2 KiB stands in for 256 KiB: the message fits, its retry copy (a not_before more) does not.
    limit = 2048
    consumer_aws.sqs.set_queue_attributes(
        QueueUrl=consumer_aws.delivery_queue_url, Attributes={"MaximumMessageSize": str(limit)}
    )
    receiver.default = Answer(503, b"")
    message = _webhook(receiver)
    message["content"]["text"] += "x" * (limit - 10 - len(json.dumps(message).encode()))
    enqueue(consumer_aws, message)

    result = consume_once(consumer_aws)

    row = entry(message)
    assert (failed_ids(result), on_queue(), len(receiver.requests)) == (set(), [], 1)
    assert (row.status, row.attempts, row.next_attempt_at) == (DeliveryStatus.FAILED, 1, None)
    assert row.last_error == (
        "webhook: HTTP 503; not retried: SQS refuses its retry as too large or not sendable (sending to the delivery "
        "queue failed (InvalidParameterValue))"
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param(
            {"notification_id": "n" * 3000}, "malformed delivery message: notification_id", id="id-over-the-hash-key"
        ),
        pytest.param(
            {"not_before": "9999-12-31T23:59:59-05:00"}, "malformed delivery message: not_before", id="past-year-9999"
        ),
        pytest.param(
            {"not_before": iso_time(time.time() + 40 * 86400)},
            "malformed delivery message: not_before is more than 30 days ahead",
            id="40-days-ahead",
        ),
    ],
)
def test_handler_body_with_an_impossible_value_is_buried_as_malformed_at_once(
    consumer_aws: AwsResources, receiver: Receiver, changes: dict[str, Any], reason: str
) -> None:
    body = json.dumps(_webhook(receiver, **changes))
    enqueue(consumer_aws, body)

    result = consume_once(consumer_aws)

    [dead] = dead_letters(consumer_aws)
    assert (failed_ids(result), on_queue(), receiver.requests) == (set(), [], [])
    assert (dead["Body"], dead["MessageAttributes"]["last_error"]["StringValue"]) == (body, reason)

"""Integration tests of the delivery handler (consumer/handler.py) on moto with a loopback receiver: copies of one
delivery in one batch (SQS delivers at least once; a redrive whose delete was lost sends a second) are sent once, and a
copy of a run before a redrive is not sent beside the redriven run."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from api.dead_letters import redrive
from core.clients import get_ledger
from core.models import DeliveryStatus
from core.times import iso_time
from tests.integration.consumer.flow import (
    consume,
    consume_once,
    dead_letters,
    delivery_message,
    enqueue,
    entry,
    on_queue,
    receive,
    version_1,
)
from tests.support.aws import AwsResources
from tests.support.receivers import Answer, Receiver


@pytest.mark.parametrize("version", [2, 1])
def test_handler_copies_of_one_delivery_in_a_batch_send_once_and_the_others_still_at_once(
    consumer_aws: AwsResources, receiver: Receiver, version: int
) -> None:
    # Both copies read a row not yet delivered at the same moment, and both were sent.
    receiver.route("/hook", Answer(200, delay=0.3))
    receiver.route("/other", Answer(200, delay=0.3))
    message = delivery_message("webhook", {"text": "hi"}, {"url": receiver.url + "/hook"}, name="hook")
    others = [
        delivery_message("webhook", {"text": f"n{n}"}, {"url": receiver.url + "/other"}, name="other") for n in range(3)
    ]
    copy = message if version == 2 else version_1(message)  # version 1: its integration's name is its key
    enqueue(consumer_aws, copy, copy, copy, *others)

    assert consume(receive(consumer_aws), consumer_aws) == {"batchItemFailures": []}

    assert len([request for request in receiver.requests if request.path == "/hook"]) == 1
    assert entry(message).attempts == 1
    assert len([request for request in receiver.requests if request.path == "/other"]) == 3
    assert receiver.max_in_flight >= 4  # one copy of the first and the three others at once


def test_handler_copy_of_a_run_before_a_redrive_is_skipped_and_the_redriven_run_kept(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    # Buried (its retry window over), then its worker died before the event source mapping deleted the message; an
    # administrator redrove the letter, and the redriven run was retrying when the old message showed again: it was
    # sent a third time, set the row back to dead with the older run's count and buried a second letter.
    receiver.default = Answer(503, b"")
    created_at = iso_time(time.time() - 25 * 3600)
    message = delivery_message("webhook", {"text": "hi"}, {"url": receiver.url + "/hook"}, created_at=created_at)
    enqueue(consumer_aws, message)
    [old] = receive(consumer_aws, visibility_timeout=60)
    consume([old])
    redrive(consumer_aws.sqs, consumer_aws.dead_letter_queue_url, consumer_aws.delivery_queue_url, get_ledger(), 100)
    consume_once(consumer_aws)
    consumer_aws.sqs.change_message_visibility(
        QueueUrl=consumer_aws.delivery_queue_url, ReceiptHandle=old["ReceiptHandle"], VisibilityTimeout=0
    )

    [again] = receive(consumer_aws)
    result = consume([again], consumer_aws)

    assert (again["MessageId"], result) == (old["MessageId"], {"batchItemFailures": []})
    assert len(receiver.requests) == 2  # one for each run
    row = entry(message)
    assert (row.status, row.attempts, row.redriven) == (DeliveryStatus.RETRYING, 2, 1)
    assert dead_letters(consumer_aws) == []
    assert [item.body["redriven"] for item in on_queue()] == [1]  # the redriven run's retry


def test_handler_one_message_twice_in_a_batch_is_sent_once(consumer_aws: AwsResources, receiver: Receiver) -> None:
    """Lambda's poller may hand over one message twice (a standard queue delivers at least once): the copies were
    counted by message id, once, so both ran at once, read a row not yet delivered, and both sent."""
    receiver.route("/hook", Answer(200, delay=0.3))
    message = delivery_message("webhook", {"text": "hi"}, {"url": receiver.url + "/hook"}, name="hook")
    enqueue(consumer_aws, message)
    [first] = receive(consumer_aws, visibility_timeout=0)
    [second] = receive(consumer_aws)
    assert first["MessageId"] == second["MessageId"]

    consume([first, second], consumer_aws)

    assert len([request for request in receiver.requests if request.path == "/hook"]) == 1
    assert entry(message).attempts == 1


def test_handler_second_copy_after_a_delivered_first_whose_write_failed_is_not_sent_again(
    consumer_aws: AwsResources, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first copy delivered, its row's write throttled (its outcome went on in a record-only copy): the second
    read a row not delivered, and sent again."""
    receiver.route("/hook", Answer(200))
    message = delivery_message("webhook", {"text": "hi"}, {"url": receiver.url + "/hook"}, name="hook")
    enqueue(consumer_aws, message, message)
    received = receive(consumer_aws)
    make_api_call = BaseClient._make_api_call
    refused: list[str] = []

    def throttled_once(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "UpdateItem" and not refused and ":s" in str(params):
            refused.append(operation)
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, operation)
        return make_api_call(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", throttled_once)

    consume(received, consumer_aws)

    assert (len(received), refused) == (2, ["UpdateItem"])
    assert len([request for request in receiver.requests if request.path == "/hook"]) == 1


def test_handler_copies_of_a_failing_delivery_in_one_batch_make_one_attempt_and_one_retry(
    consumer_aws: AwsResources, receiver: Receiver
) -> None:
    """The second copy read the first's retrying row and sent at once, with no backoff, and queued a retry of its own:
    two retry chains of one delivery."""
    receiver.route("/hook", Answer(503, b""))
    message = delivery_message("webhook", {"text": "hi"}, {"url": receiver.url + "/hook"}, name="hook")
    enqueue(consumer_aws, message, message)
    received = receive(consumer_aws)

    consume(received, consumer_aws)

    assert len(received) == 2
    assert len([request for request in receiver.requests if request.path == "/hook"]) == 1
    assert (entry(message).attempts, len(on_queue())) == (1, 1)

"""Integration test of the delivery handler (consumer/handler.py) on moto with a loopback receiver: copies of one
delivery in one batch (SQS delivers at least once; a redrive whose delete was lost sends a second) are sent once."""

from __future__ import annotations

import pytest

from tests.integration.consumer.flow import consume, delivery_message, enqueue, entry, receive, version_1
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

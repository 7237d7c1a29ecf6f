"""infra/local/moto_sqs.py under moto: pollers receiving from one queue at the same moment never share a message in
flight, as SQS's receivers do not. moto's receive is widened here (a pause before it marks a message received), so
that without the lock two receivers take the same message every time."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from infra.local.moto_sqs import serialize_queues


@pytest.fixture
def queue() -> Iterator[tuple[Any, str]]:
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        url = client.create_queue(QueueName="deliveries", Attributes={"VisibilityTimeout": "180"})["QueueUrl"]
        yield client, url


@pytest.fixture
def slow_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pause 20 ms before moto marks a message received: another receiver's scan fits between its check and its mark."""
    from moto.sqs.models import Message

    mark = Message.mark_received

    def slow(self: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.02)
        mark(self, *args, **kwargs)

    monkeypatch.setattr(Message, "mark_received", slow)


def test_moto_sqs_receivers_at_once_never_share_a_message_in_flight(queue: tuple[Any, str], slow_marks: None) -> None:
    client, url = queue
    serialize_queues()
    client.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": str(n)} for n in range(10)])
    received: Counter[str] = Counter()
    lock = threading.Lock()

    def poll() -> None:
        while messages := client.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", []):
            with lock:  # never deleted: each stays in flight for 180 s
                received.update(message["MessageId"] for message in messages)

    threads = [threading.Thread(target=poll) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(received) == 10
    assert max(received.values()) == 1


def test_moto_sqs_long_poll_waits_outside_the_lock_and_gets_a_message_sent_meanwhile(queue: tuple[Any, str]) -> None:
    client, url = queue
    serialize_queues()
    sender = threading.Timer(0.5, lambda: client.send_message(QueueUrl=url, MessageBody="late"))
    sender.start()

    started = time.monotonic()
    messages = client.receive_message(QueueUrl=url, WaitTimeSeconds=5).get("Messages", [])

    sender.join()
    assert [message["Body"] for message in messages] == ["late"]
    assert time.monotonic() - started < 4


def test_moto_sqs_serialize_queues_wraps_each_method_once() -> None:
    from moto.sqs.models import SQSBackend

    serialize_queues()
    wrapped = SQSBackend.receive_message
    serialize_queues()

    assert SQSBackend.receive_message is wrapped

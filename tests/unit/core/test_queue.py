"""Unit tests of core/queue.py: SendMessageBatch in chunks of ten, one retry of the entries SQS reports failed, and
what each send does when SQS cannot be reached."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from core.errors import UpstreamError
from core.queue import BATCH_BYTES_LIMIT, DeadLetterQueue, DeliveryQueue
from tests.fakes.sqs import FakeSqsClient
from tests.fakes.unreachable import UnreachableClient

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/deliveries"


def _messages(count: int) -> list[tuple[str, str]]:
    return [(f"integration-{index}", f"body-{index}") for index in range(count)]


def test_queue_send_25_messages_makes_3_calls_of_at_most_10() -> None:
    client = FakeSqsClient()

    outcome = DeliveryQueue(client, URL).send(_messages(25))

    assert [len(batch) for batch in client.batches] == [10, 10, 5]
    assert len(outcome.sent) == 25
    assert outcome.failed == {}


class MeetingSqsClient(FakeSqsClient):
    """Holds each ``send_message_batch`` call until ``calls`` of them are in flight at once (or 5 s have passed)."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.meeting = threading.Barrier(calls, timeout=5.0)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        """Wait for the other calls, then accept the entries."""
        self.meeting.wait()
        return super().send_message_batch(QueueUrl, Entries)


def test_queue_send_50_messages_makes_its_5_calls_at_once() -> None:
    # Sent one after another, the first call would wait alone at the meeting point and fail it after 5 s.
    client = MeetingSqsClient(calls=5)

    outcome = DeliveryQueue(client, URL).send(_messages(50))

    assert ([len(batch) for batch in client.batches], len(outcome.sent), outcome.failed) == ([10] * 5, 50, {})


def test_queue_send_reports_message_id_per_key() -> None:
    client = FakeSqsClient()

    outcome = DeliveryQueue(client, URL).send(_messages(12))

    assert {key: client.sent[message_id] for key, message_id in outcome.sent.items()} == dict(_messages(12))


def test_queue_send_entry_ids_are_short_and_alphanumeric() -> None:
    client = FakeSqsClient()

    DeliveryQueue(client, URL).send([("name with spaces/and.dots", "b")])

    assert client.batches[0][0]["Id"].isalnum()


def test_queue_send_bodies_over_request_limit_split_into_more_calls() -> None:
    client = FakeSqsClient()
    big = "x" * (BATCH_BYTES_LIMIT // 2 + 1)

    outcome = DeliveryQueue(client, URL).send([("a", big), ("b", big), ("c", "small")])

    assert [len(batch) for batch in client.batches] == [1, 2]
    assert set(outcome.sent) == {"a", "b", "c"}


def test_queue_send_entry_failed_once_is_retried_and_sent() -> None:
    client = FakeSqsClient(fail_bodies={"body-3": 1, "body-11": 1})

    outcome = DeliveryQueue(client, URL).send(_messages(12))

    assert len(client.batches) == 3
    assert [entry["MessageBody"] for entry in client.batches[2]] == ["body-3", "body-11"]
    assert len(outcome.sent) == 12
    assert outcome.failed == {}


def test_queue_send_entry_failing_twice_is_reported_failed_not_sent() -> None:
    client = FakeSqsClient(fail_bodies={"body-1": 2})

    outcome = DeliveryQueue(client, URL).send(_messages(3))

    assert outcome.failed == {"integration-1": "InternalError"}
    assert set(outcome.sent) == {"integration-0", "integration-2"}


def test_queue_send_entry_is_retried_only_once() -> None:
    client = FakeSqsClient(fail_bodies={"body-0": 5})

    DeliveryQueue(client, URL).send(_messages(1))

    assert len(client.batches) == 2


def test_queue_send_whole_call_error_reports_every_entry_failed_with_code() -> None:
    client = FakeSqsClient(error_code="AWS.SimpleQueueService.NonExistentQueue")

    outcome = DeliveryQueue(client, URL).send(_messages(11))

    assert outcome.sent == {}
    assert outcome.failed == {key: "AWS.SimpleQueueService.NonExistentQueue" for key, _ in _messages(11)}
    assert len(client.batches) == 4


def test_queue_send_unreachable_sqs_reports_every_entry_failed_with_error_name() -> None:
    client = UnreachableClient("sqs")

    outcome = DeliveryQueue(client, URL).send(_messages(3))

    assert outcome.sent == {}
    assert outcome.failed == {key: "EndpointConnectionError" for key, _ in _messages(3)}
    assert client.calls == ["send_message_batch", "send_message_batch"]


def test_queue_send_later_unreachable_sqs_raises_upstream_error_without_url() -> None:
    queue = DeliveryQueue(UnreachableClient("sqs"), URL)

    # The whole text is matched: botocore's message names the endpoint, the error's never does.
    with pytest.raises(UpstreamError, match=r"^sending to the delivery queue failed \(EndpointConnectionError\)$"):
        queue.send_later("body", 30)


def test_dead_letter_queue_bury_unreachable_sqs_raises_upstream_error() -> None:
    dead_letters = DeadLetterQueue(UnreachableClient("sqs"), URL)

    with pytest.raises(UpstreamError, match=r"^sending to the dead-letter queue failed \(EndpointConnectionError\)$"):
        dead_letters.bury("body", "webhook: HTTP 503")

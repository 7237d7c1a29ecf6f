"""Unit tests of core/queue.py: SendMessageBatch in chunks of ten, one retry of the entries SQS reports failed, and
what each send does when SQS cannot be reached."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from core.errors import UpstreamError
from core.models import Content, DeliveryMessage, IntegrationType, MessageIntegration, RecordedOutcome
from core.queue import (
    BATCH_BYTES_LIMIT,
    DELIVERY_MESSAGE_BYTES_LIMIT,
    MAX_ERROR_LENGTH,
    MESSAGE_BYTES_LIMIT,
    MIN_SEND_SECONDS,
    NO_ANSWER,
    NO_TIME,
    DeadLetterQueue,
    DeliveryQueue,
)
from core.times import iso_time
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


class StallingSqsClient(FakeSqsClient):
    """Holds every call whose batch carries ``stalled`` (every call: ``None``) until ``release`` is set, as an SQS that
    stops answering."""

    def __init__(self, stalled: str | None, **options: Any) -> None:
        super().__init__(**options)
        self.stalled = stalled
        self.release = threading.Event()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        """Wait for the release when the batch holds the stalled body (every batch: ``None``), then answer as the
        fake does."""
        if self.stalled is None or any(entry["MessageBody"] == self.stalled for entry in Entries):
            assert self.release.wait(timeout=10.0), "the test never released the stalled call"
        return super().send_message_batch(QueueUrl, Entries)


def _seconds_left(seconds: float) -> Callable[[], float]:
    deadline = time.monotonic() + seconds
    return lambda: deadline - time.monotonic()


def test_queue_send_batch_unanswered_in_the_time_left_is_reported_failed_the_others_sent() -> None:
    client = StallingSqsClient(stalled="body-12")

    outcome = DeliveryQueue(client, URL).send(_messages(25), _seconds_left(0.5))
    client.release.set()

    assert set(outcome.sent) == {f"integration-{index}" for index in [*range(10), *range(20, 25)]}
    assert outcome.failed == {f"integration-{index}": NO_ANSWER for index in range(10, 20)}


def test_queue_send_one_batch_unanswered_is_given_up_at_the_deadline() -> None:
    # One batch is sent from a thread too when time is bounded: a call on the caller's own thread could not be left.
    # (Had the send waited for the call, the fake would have raised after 10 s, and the send with it.)
    client = StallingSqsClient(stalled="body-0")

    outcome = DeliveryQueue(client, URL).send(_messages(3), _seconds_left(0.5))
    client.release.set()

    assert (outcome.sent, outcome.failed) == ({}, {key: NO_ANSWER for key, _ in _messages(3)})


def test_queue_send_late_answer_of_a_given_up_batch_changes_nothing_reported() -> None:
    client = StallingSqsClient(stalled="body-0")
    outcome = DeliveryQueue(client, URL).send(_messages(1), _seconds_left(0.5))
    reported = (dict(outcome.sent), dict(outcome.failed))

    client.release.set()
    for _ in range(100):  # the left thread finishes its call: SQS takes the message after all
        if client.sent:
            break
        time.sleep(0.01)

    assert list(client.sent.values()) == ["body-0"]
    assert (outcome.sent, outcome.failed) == reported == ({}, {"integration-0": NO_ANSWER})


def test_queue_send_no_time_left_sends_nothing_and_reports_every_entry() -> None:
    client = FakeSqsClient()

    outcome = DeliveryQueue(client, URL).send(_messages(12), lambda: 0.0)

    assert (client.batches, outcome.sent) == ([], {})
    assert outcome.failed == {key: NO_TIME for key, _ in _messages(12)}


def test_queue_send_less_than_a_round_trip_left_sends_nothing() -> None:
    client = FakeSqsClient()

    outcome = DeliveryQueue(client, URL).send(_messages(3), lambda: MIN_SEND_SECONDS / 2)

    assert (client.batches, outcome.failed) == ([], {key: NO_TIME for key, _ in _messages(3)})


def test_queue_send_batches_never_started_in_the_time_left_are_reported_not_sent() -> None:
    # Ten batches, eight threads, SQS answering none: eight batches are left to their threads (they may arrive), the
    # two that never started are known not sent.
    client = StallingSqsClient(stalled=None)

    outcome = DeliveryQueue(client, URL).send(_messages(100), _seconds_left(0.5))
    client.release.set()

    reasons = [outcome.failed[key] for key, _ in _messages(100)]
    assert (reasons.count(NO_ANSWER), reasons.count(NO_TIME), outcome.sent) == (80, 20, {})


def test_queue_send_refused_entry_not_tried_again_without_time_left() -> None:
    client = FakeSqsClient(fail_bodies={"body-1": 1})
    answers = iter([1.0, 1.0, 0.0])  # time to start the first try and wait for it, none for a second

    outcome = DeliveryQueue(client, URL).send(_messages(3), lambda: next(answers, 0.0))

    assert len(client.batches) == 1
    assert outcome.failed == {"integration-1": "InternalError"}


def test_queue_send_refused_entry_tried_again_with_time_left() -> None:
    client = FakeSqsClient(fail_bodies={"body-1": 1})

    outcome = DeliveryQueue(client, URL).send(_messages(3), _seconds_left(30.0))

    assert (len(client.batches), len(outcome.sent), outcome.failed) == (2, 3, {})


def test_queue_send_bounded_batches_go_through_the_batch_client_made_at_the_first_batch() -> None:
    client, batch_client = FakeSqsClient(), FakeSqsClient()
    made: list[str] = []

    def make() -> FakeSqsClient:
        made.append("batch client")
        return batch_client

    queue = DeliveryQueue(client, URL, batch_client=make)
    assert made == []

    queue.send(_messages(12), _seconds_left(30.0))

    assert (len(batch_client.batches), client.batches, made) == (2, [], ["batch client"])


def test_queue_send_without_a_bound_keeps_the_client_with_retries() -> None:
    client, batch_client = FakeSqsClient(), FakeSqsClient()

    DeliveryQueue(client, URL, batch_client=lambda: batch_client).send(_messages(12))

    assert (len(client.batches), batch_client.batches) == (2, [])


def test_queue_send_later_unreachable_sqs_raises_upstream_error_without_url() -> None:
    queue = DeliveryQueue(UnreachableClient("sqs"), URL)

    # The whole text is matched: botocore's message names the endpoint, the error's never does.
    with pytest.raises(UpstreamError, match=r"^sending to the delivery queue failed \(EndpointConnectionError\)$"):
        queue.send_later("body", 30)


def test_dead_letter_queue_bury_unreachable_sqs_raises_upstream_error() -> None:
    dead_letters = DeadLetterQueue(UnreachableClient("sqs"), URL)

    with pytest.raises(UpstreamError, match=r"^sending to the dead-letter queue failed \(EndpointConnectionError\)$"):
        dead_letters.bury("body", "webhook: HTTP 503")


def test_dead_letter_queue_bury_replaces_what_sqs_refuses_in_the_last_error() -> None:
    # A receiver's answer quoted in the error (control characters, U+FFFF): SQS refused the letter as unsendable.
    sent: list[dict[str, Any]] = []

    class Recording:
        def send_message(self, **kwargs: Any) -> dict[str, Any]:
            sent.append(kwargs)
            return {"MessageId": "m-1"}

    DeadLetterQueue(Recording(), URL).bury("body", "webhook: HTTP 500: a\x00b\x08c\uffffd\te \U0001f600")

    [attributes] = [call["MessageAttributes"] for call in sent]
    assert attributes["last_error"]["StringValue"] == "webhook: HTTP 500: a\ufffdb\ufffdc\ufffdd\te \U0001f600"


def test_dead_letter_queue_bury_keeps_exactly_xml_characters_in_the_last_error() -> None:
    # XML 1.0's Char production, what SQS takes in a message attribute: every code point is checked.
    def xml_char(point: int) -> bool:
        return point in (0x9, 0xA, 0xD) or 0x20 <= point <= 0xD7FF or 0xE000 <= point <= 0xFFFD or point >= 0x10000

    sent: list[str] = []

    class Recording:
        def send_message(self, **kwargs: Any) -> dict[str, Any]:
            sent.append(kwargs["MessageAttributes"]["last_error"]["StringValue"])
            return {"MessageId": "m-1"}

    dead_letters = DeadLetterQueue(Recording(), URL)
    for start in range(0, 0x110000, MAX_ERROR_LENGTH):
        points = range(start, min(start + MAX_ERROR_LENGTH, 0x110000))
        dead_letters.bury("body", "".join(map(chr, points)))
        assert sent[-1] == "".join(chr(point) if xml_char(point) else "\ufffd" for point in points)


def _largest_delivery_message() -> DeliveryMessage:
    """A delivery message of exactly the largest size the producer enqueues, its bulk in the target (which every copy
    keeps), not in the content (which a record-only copy drops)."""
    message = DeliveryMessage(
        notification_id="n" * 36,
        delivery_key="hook",
        channel="orders",
        topic="shipped",
        created_at=iso_time(time.time()),
        integration=MessageIntegration(name="hook", type=IntegrationType.WEBHOOK, target={"url": "https://h", "p": ""}),
        content=Content(text=""),
    )
    pad = DELIVERY_MESSAGE_BYTES_LIMIT - len(message.model_dump_json(exclude_none=True).encode())
    integration = message.integration.model_copy(update={"target": {"url": "https://h", "p": "x" * pad}})
    return message.model_copy(update={"integration": integration})


def test_delivery_message_limit_leaves_room_for_every_copy_the_consumer_makes() -> None:
    message = _largest_delivery_message()
    later = iso_time(time.time() + 14 * 86400)
    many = 10**9
    # A redriven, throttled retry; its record-only copy with an error JSON escapes in six bytes a character; its
    # dead letter with an error of four UTF-8 bytes a character as the ``last_error`` attribute.
    retry = message.model_copy(
        update={
            "not_before": later,
            "attempt": many,
            "throttled": many,
            "window_start": later,
            "prior_attempts": many,
            "redriven": many,
        }
    )
    error = "\x01" * MAX_ERROR_LENGTH
    outcome = RecordedOutcome(
        status="failed", attempts=many, at=later, last_error=error, provider_message_id="\U0001f600" * 200, tries=many
    )
    record_only = retry.model_copy(update={"outcome": outcome, "content": Content()})
    dead = retry.model_copy(update={"not_before": None})
    attribute = len("last_error") + len("String") + len(("\U0001f600" * MAX_ERROR_LENGTH).encode())

    sizes = {
        "retry": len(retry.model_dump_json(exclude_none=True).encode()),
        "record-only": len(record_only.model_dump_json(exclude_none=True).encode()),
        "dead letter": len(dead.model_dump_json(exclude_none=True).encode()) + attribute,
    }

    assert len(message.model_dump_json(exclude_none=True).encode()) == DELIVERY_MESSAGE_BYTES_LIMIT
    assert max(sizes.values()) <= MESSAGE_BYTES_LIMIT, sizes
